"""Writing files so that a reader never sees half of one.

Every file the project rewrites in place (rollout records and deployment state, the pending
registry writes, validation reports, model cards, drafted specs, training checkpoints) is written
to a temporary file in the same folder and renamed over the old one: ``os.replace`` is atomic on
POSIX file systems, so a reader (the router, a retried task, a person) sees the old content or the
new, and a write that fails part-way leaves the old file as it was and no temporary file behind.
The temporary name is unique per call, so two processes writing the same file do not share one.
The file keeps the permissions it had (a new one gets the usual ``0666 & ~umask``, as ``open``
gives it), not the ``0600`` of a bare temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_file(path: Path | str, mode: str = "w", *, fsync: bool = False) -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on a clean exit it replaces ``path``.

    ``mode`` is ``"w"`` (text, UTF-8) or ``"wb"``. ``fsync=True`` flushes the data to disk before
    the rename, for files that must survive a power cut (training checkpoints).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file writes a whole file: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path | str, content: str | bytes, *, fsync: bool = False) -> Path:
    """Write ``content`` (text as UTF-8, or bytes) to ``path`` atomically; returns the path."""
    with atomic_file(path, "wb" if isinstance(content, bytes) else "w", fsync=fsync) as fh:
        fh.write(content)
    return Path(path)


def _read_umask() -> int:
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


# Read once, at import: os.umask can only be read by setting it, which is not safe while other
# threads (the router's, the inference log writer's) create files.
_UMASK = _read_umask()


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_UMASK
