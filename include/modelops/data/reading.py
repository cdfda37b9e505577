"""Reading any model's data: one file or a folder of CSV/Parquet files (partitioned or not).

``read_dataset`` and ``fingerprint_dataset`` work on a user's own tables and on the generated
example data alike, so both go through the same path; ``split_holdout`` cuts a frame in time.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)


_NOT_FOUND_HINT = (
    "Generate the reference data with `make data` or point data.path in the spec at your CSV/Parquet file."
)


class DataLoadError(Exception):
    """A dataset could not be read; the message names the file and what to do."""


class DatasetNotFoundError(DataLoadError):
    """No data files where the dataset should be."""


def data_files(path: Path, fmt: str) -> list[Path]:
    """The data files of a dataset: the file itself, or ``**/*.<fmt>`` under a folder, sorted.

    Names starting with ``.`` or ``_`` (checksums, ``_SUCCESS`` markers, temporary files) are
    skipped, as Spark and pyarrow do.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"Unknown data format {fmt!r}; use 'parquet' or 'csv'")
    if not path.exists():
        raise DatasetNotFoundError(f"No dataset at {path}: the path does not exist. {_NOT_FOUND_HINT}")
    if path.is_file():
        return [path]
    files = sorted(
        p
        for p in path.glob(f"**/*.{fmt}")
        if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
    )
    if not files:
        raise DatasetNotFoundError(
            f"No {fmt} files under {path} (searched recursively for '**/*.{fmt}'). {_NOT_FOUND_HINT}"
        )
    return files


def read_dataset(path: str | Path, fmt: str = "parquet", *, parse_dates: Sequence[str] = ()) -> pd.DataFrame:
    """Read a file, or every data file in a folder (recursively), into one DataFrame.

    Files are read one by one in sorted path order and concatenated, so folder names such
    as ``event_date=...`` never become columns. Zero-row files are allowed.

    Args:
        path: A data file, or a folder searched for ``**/*.<fmt>``.
        fmt: ``parquet`` or ``csv``.
        parse_dates: Time columns: CSV text parsed as datetimes, dates as midnight timestamps;
            left unchanged where that fails, for validation to report (absent columns are ignored).

    Returns:
        The rows of all files, with a fresh ``RangeIndex``.

    Raises:
        DatasetNotFoundError: The path does not exist or holds no ``<fmt>`` files.
        DataLoadError: A file is unreadable or corrupt; the message names it.
    """
    root = Path(path).expanduser()
    frames = [_read_file(file, fmt, parse_dates) for file in data_files(root, fmt)]
    non_empty = [f for f in frames if len(f)]
    if not non_empty:
        return frames[0].reset_index(drop=True)
    if len(non_empty) == 1:
        return non_empty[0].reset_index(drop=True)
    return pd.concat(non_empty, ignore_index=True)


def _read_file(file: Path, fmt: str, parse_dates: Sequence[str]) -> pd.DataFrame:
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            # ParquetFile reads just this file: no hive partition columns from the folder names.
            frame = pq.ParquetFile(file).read().to_pandas()
        else:
            frame = pd.read_csv(file)
    except Exception as exc:  # pyarrow, pandas and the OS raise many types for one cause
        raise DataLoadError(
            f"Cannot read {fmt} file {file}: {type(exc).__name__}: {exc}. "
            f"Check that it is a complete, valid {fmt} file, or remove it from the dataset."
        ) from exc
    for column in parse_dates:
        if column in frame.columns:
            frame[column] = _as_datetimes(frame[column], parse_text=fmt == "csv")
    return frame


def _as_datetimes(series: pd.Series, *, parse_text: bool) -> pd.Series:
    """A time column as datetimes where that is lossless; otherwise unchanged, for validation to name.

    Dates (Parquet ``date32`` reads as ``datetime.date`` objects) become midnight timestamps.
    Text is parsed only from CSV, where every column is text: with one date format for the
    whole column, as pandas infers it (no per-value guessing that could read 01/02 two ways).
    Parquet text stays text, and so does CSV text that does not parse: validation then fails
    on the column's type, with examples, instead of the split failing later.
    """
    import datetime as dt
    import warnings

    if pd.api.types.is_datetime64_any_dtype(series.dtype) or not pd.api.types.is_string_dtype(series.dtype):
        return series  # already datetimes; numbers stay numbers (validation rejects them, saying why)
    values = series.dropna()
    is_dates = len(values) and all(isinstance(v, dt.date) for v in values)
    if not (is_dates or parse_text):
        return series
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not infer format", mixed time zones: it stays text
        try:
            parsed = pd.to_datetime(series)
        except (ValueError, TypeError, OverflowError):
            try:  # ISO 8601 text with and without a time of day ("2026-01-31", "2026-02-01 10:00")
                parsed = pd.to_datetime(series, format="ISO8601")
            except (ValueError, TypeError, OverflowError):
                return series
    # Mixed UTC offsets parse to an object column of Timestamps, which cannot be ordered safely.
    return parsed if pd.api.types.is_datetime64_any_dtype(parsed.dtype) else series


def split_holdout(
    df: pd.DataFrame, *, time_column: str | None, holdout_fraction: float, seed: int
) -> tuple[pd.Series, str]:
    """Which rows are held out for evaluation, and how the split was made, in words.

    With a time column the holdout is the latest ``holdout_fraction`` of rows (times after
    the quantile), so a model is judged on the future it will meet; else a seeded random sample.
    """
    if time_column:
        times = df[time_column]
        cut = times.quantile(1 - holdout_fraction)
        return times > cut, f"time-based: {time_column} > {cut}"
    mask = pd.Series(False, index=df.index)
    mask[df.sample(frac=holdout_fraction, random_state=seed).index] = True
    return mask, f"random {holdout_fraction:.0%} (seed {seed})"


def fingerprint_dataset(path: str | Path, fmt: str = "parquet") -> dict:
    """A content hash of a dataset's files, recorded on model versions for lineage.

    Args:
        path: A data file, or a folder searched for ``**/*.<fmt>`` (as in ``read_dataset``).
        fmt: ``parquet`` or ``csv``.

    Returns:
        ``{"sha256": hex digest over the sorted (relative path, size, sha256 of bytes) of
        every file, "files": count, "bytes": total size}``. It changes when any file's
        content, name or set of files changes, and is stable otherwise.

    Raises:
        DatasetNotFoundError: The path does not exist or holds no ``<fmt>`` files.
    """
    root = Path(path).expanduser()
    files = data_files(root, fmt)
    base = root if root.is_dir() else root.parent
    entries = []
    for file in files:
        digest = hashlib.sha256()
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        entries.append((file.relative_to(base).as_posix(), file.stat().st_size, digest.hexdigest()))
    total = hashlib.sha256()
    for rel, size, digest in sorted(entries):
        total.update(f"{rel}\t{size}\t{digest}\n".encode())
    return {"sha256": total.hexdigest(), "files": len(entries), "bytes": sum(e[1] for e in entries)}
