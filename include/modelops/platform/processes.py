"""Processes this project starts and stops: who they are, whether they run, how they end.

A process is named for good by its pid and its start time (clock ticks after boot): a pid reused
by another process is not ours. Servers are started in sessions of their own and stopped with
their whole group (SIGTERM, then SIGKILL), with the descendants that left the group. A command
marks every process it starts (:data:`OWNER_ENV`), so that what it started can be found and
stopped after a Ctrl-C, and what another command started is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


# Popen objects of processes this Python process started, so they are reaped (not left as zombies).
_CHILDREN: dict[int, subprocess.Popen] = {}


def spawn(cmd: list[str], *, env: dict[str, str], log_path: Path, cwd: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
    _CHILDREN[proc.pid] = proc
    return proc


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks after boot: with the pid, it names one process for good.

    On Linux this is ``starttime`` of ``/proc/<pid>/stat``, which never changes. psutil's public
    ``create_time()`` adds the boot time to it and so moves when the system clock is stepped (NTP
    at boot, a VM resumed): a deployment's recorded identity would stop matching its own process,
    and it would be left running as "not ours". psutil names processes by these same ticks
    internally (``Process._ident``). Elsewhere, psutil's ``create_time()`` in hundredths of a second.
    """
    if sys.platform.startswith("linux"):
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19])
        except (OSError, IndexError, ValueError):
            return None
    import psutil

    try:
        return round(psutil.Process(pid).create_time() * 100)
    except psutil.Error:
        return None


def process_alive(pid: int | None, started: int | None) -> bool:
    """True when ``pid`` runs, is not a zombie, and is the process that started at ``started``
    (a pid reused by another process after a reboot or a long time is not ours)."""
    import psutil

    if not pid:
        return False
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        return False
    try:
        if psutil.Process(pid).status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
    except psutil.Error:
        return False
    return started is None or start_ticks(pid) == started


def stop_pid(pid: int | None, started: int | None, timeout_s: float = 15) -> None:
    """SIGTERM the process group of ``pid`` (a graceful shutdown), then SIGKILL what is left."""
    if not pid or not process_alive(pid, started):
        _CHILDREN.pop(pid or 0, None)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while process_alive(pid, started) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(5)


def _environ_entries(pid: int) -> list[bytes] | None:
    """``NAME=value`` entries of the process's environment, or None when it cannot be read.

    On Linux the whole ``/proc/<pid>/environ`` block, every entry: a process that set its title
    (``circusd``, the parent of BentoML's workers, through ``setproctitle``) overwrites the start
    of that block with NUL bytes, and psutil's ``environ()`` stops at the first empty entry, so it
    sees none of the rest and such a process would be left running. Elsewhere, psutil's view.
    """
    if sys.platform.startswith("linux"):
        try:
            return [e for e in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if e]
        except OSError:
            return None
    import psutil

    try:
        return [f"{k}={v}".encode() for k, v in psutil.Process(pid).environ().items()]
    except psutil.Error:
        return None


def pids_with_env(name: str, value: str) -> list[int]:
    """Processes of this user whose environment has ``name=value``.

    BentoML's workers run in sessions of their own, so a killed server leaves them behind (still
    answering on the port); each server's own ``BENTOML_HOME`` finds them all.
    """
    import psutil

    needle = f"{name}={value}".encode()
    return [pid for pid in psutil.pids() if needle in (_environ_entries(pid) or ())]


def stop_process(proc: subprocess.Popen, timeout_s: float = 15) -> str:
    """Stop a process started in its own session, every process in its group, and its descendants.

    Returns how it ended: ``"exited"`` (before the call), ``"terminated"`` (it exited on SIGTERM
    within ``timeout_s``) or ``"killed"`` (it ignored SIGTERM and got SIGKILL).

    SIGTERM first; then SIGKILL to the group in any case, because workers (gunicorn, uvicorn,
    BentoML runners) can outlive their parent, and the group is ours alone (start_new_session).
    Descendants that left the group (Airflow's task supervisors start their own, so a task
    running when ``make up`` stops would outlive it) are found before the first signal, while
    they are still linked to ``proc``, and stopped the same way.
    """
    import psutil

    try:
        strays = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
    except psutil.Error:
        strays = []
    ended = "exited"
    if proc.poll() is None:
        ended = "terminated"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            ended = "killed"
            log.warning("pid %s ignored SIGTERM for %.0f s; killing its process group", proc.pid, timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    strays = [p for p in strays if _alive(p)]
    if strays:
        log.warning(
            "Stopping %d process(es) that left pid %s's group: %s",
            len(strays),
            proc.pid,
            ", ".join(f"{p.pid}" for p in strays),
        )
        for p in strays:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, still = psutil.wait_procs(strays, timeout=5)
        for p in still:
            with contextlib.suppress(psutil.Error):
                p.kill()
    return ended


def _alive(p: Any) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


#: Names the command that started a process: ``<pid>:<start time>`` of that command, in the
#: environment of everything it starts (inherited by Airflow, its tasks, and their servers).
OWNER_ENV = "MODELOPS_OWNER"


def claim_processes() -> bool:
    """Mark every process this command starts from now on as its own (:data:`OWNER_ENV`).

    True when this call made the mark (the command's outermost call: it stops them with
    :func:`stop_started`); False when this process already holds it. A mark inherited from
    another command (e.g. a test runner) is replaced: that one's processes are not ours.
    """
    me = f"{os.getpid()}:{start_ticks(os.getpid())}"
    if os.environ.get(OWNER_ENV) == me:
        return False
    os.environ[OWNER_ENV] = me
    return True


def owner_gone(pid: int) -> bool:
    """True when ``pid`` carries an owner mark whose command no longer runs."""
    prefix = f"{OWNER_ENV}=".encode()
    mark = next(
        (e[len(prefix) :].decode() for e in _environ_entries(pid) or () if e.startswith(prefix)), None
    )
    if mark is None:
        return False
    opid, _, ticks = mark.partition(":")
    return not (opid.isdigit() and start_ticks(int(opid)) == (int(ticks) if ticks.isdigit() else None))


def terminate(pids: list[int], timeout_s: float = 10) -> None:
    import psutil

    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(pid))
    for p in procs:
        with contextlib.suppress(psutil.Error):
            log.info("Stopping pid %s (%s)", p.pid, " ".join(p.cmdline()[:4]))
            p.terminate()
    _, still = psutil.wait_procs(procs, timeout=timeout_s)
    for p in still:
        with contextlib.suppress(psutil.Error):
            p.kill()


def forget(pid: int) -> None:
    """Drop ``pid`` from the children :func:`spawn` started (it was stopped some other way)."""
    _CHILDREN.pop(pid, None)
