"""Synthetic card-transaction fraud data for the reference model (the demo's example data).

``generate_transactions`` writes a seeded, realistic dataset whose columns match
``include/models/fraud_detection.yaml`` as daily partitions
(``<out>/event_date=YYYY-MM-DD/part-0000.parquet``). Besides the ``reference`` data it
writes variants that exercise the rest of the pipeline: three kinds of drift
(``covariate_shift``, ``label_shift``, ``concept_drift``) and eight broken datasets
(``BROKEN_VARIANTS``) that validation must stop.

It is read like any user's data, through ``include.modelops.data.reading``.

Run ``python -m include.modelops.data.example --out PATH [--variant V]`` to write a dataset.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import uuid
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = (
    "reference",
    "covariate_shift",
    "label_shift",
    "concept_drift",
    "missing_column",
    "wrong_type",
    "nulls",
    "out_of_range",
    "empty",
    "duplicate_rows",
    "time_as_text",
    "class_sorted",
)
"""Every dataset ``generate_transactions`` can write."""

BROKEN_VARIANTS: tuple[str, ...] = VARIANTS[4:]
"""Variants that break the spec's contract; validation must reject each of them."""

TIME_COLUMN = "event_time"
ENTITY_COLUMN = "card_id"
TARGET_COLUMN = "is_fraud"
PARTITION_KEY = "event_date"
# Written into every dataset this module generates. Only a folder holding it is ever replaced:
# a user's own folder of date partitions looks the same from outside and must never be touched.
GENERATED_MARKER = ".modelops-generated"

CATEGORIES: tuple[str, ...] = (
    "grocery",
    "fuel",
    "electronics",
    "travel",
    "restaurants",
    "online_retail",
    "gaming",
    "cash_advance",
)
CHANNELS: tuple[str, ...] = ("pos", "online", "atm")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central")


# --- Input distributions -------------------------------------------------------------------
# Rows of _CHANNEL_MIX follow REGIONS, columns CHANNELS.
_REGION_MIX = np.array([0.22, 0.18, 0.20, 0.24, 0.16])
_CHANNEL_MIX = np.array(
    [[0.70, 0.22, 0.08], [0.74, 0.16, 0.10], [0.60, 0.31, 0.09], [0.64, 0.28, 0.08], [0.69, 0.24, 0.07]]
)
# Rows follow CHANNELS, columns CATEGORIES; an ATM withdrawal is always a cash advance.
_CATEGORY_MIX = np.array(
    [
        [0.32, 0.16, 0.07, 0.05, 0.30, 0.04, 0.02, 0.04],
        [0.06, 0.00, 0.16, 0.14, 0.04, 0.40, 0.16, 0.04],
        [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 1.00],
    ]
)
# Regional taste, multiplied into _CATEGORY_MIX and renormalised (rows REGIONS).
_CATEGORY_TILT = np.array(
    [
        [1.0, 1.3, 1.0, 0.8, 0.9, 1.0, 0.9, 1.0],
        [1.0, 0.9, 0.8, 1.4, 1.3, 0.9, 0.8, 1.1],
        [0.9, 1.0, 1.3, 0.9, 0.9, 1.1, 1.5, 1.0],
        [1.0, 1.0, 1.1, 1.2, 1.0, 1.2, 1.0, 0.9],
        [1.1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    ]
)
# Typical amount (median, EUR) and lognormal spread per category.
_AMOUNT_MEDIAN = np.array([35.0, 55.0, 220.0, 380.0, 30.0, 55.0, 18.0, 120.0])
_AMOUNT_SIGMA = np.array([0.6, 0.4, 0.9, 0.8, 0.6, 0.9, 0.9, 0.7])
# Relative frequency of each local hour per channel (rows CHANNELS).
_HOUR_WEIGHTS = np.array(
    [
        [1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 3, 5, 6, 7, 8, 10, 9, 8, 8, 9, 10, 10, 8, 6, 4, 3, 2],
        [3, 2, 1.5, 1, 1, 1, 1.5, 2, 3, 4, 4, 5, 5, 5, 5, 5, 5, 6, 7, 8, 9, 9, 7, 5],
        [1.5, 1, 0.6, 0.4, 0.4, 0.5, 1, 2, 4, 5, 5, 6, 7, 6, 5, 5, 6, 7, 8, 7, 6, 5, 4, 2.5],
    ]
)
_INTERNATIONAL_RATE = np.array([0.03, 0.12, 0.02])  # per channel
_INTERNATIONAL_TILT = np.array([1.0, 0.9, 1.3, 1.5, 0.8])  # per region
_DISTANCE_NULL_RATE = 0.01

# --- Fraud model: log-odds contributions ---------------------------------------------------
# Intercepts put the reference positive rate at about 1.5%. They are constants (not fitted
# per dataset) so that covariate_shift keeps exactly the reference P(fraud | x).
_INTERCEPT_REFERENCE = -8.5
_INTERCEPT_CONCEPT = -6.85
_CATEGORY_EFFECT = np.array([-0.5, -0.25, 0.6, 0.25, -0.6, 0.35, 0.5, 0.6])
_REGION_EFFECT = np.array([-0.2, 0.1, 0.35, 0.0, -0.3])
_CHANNEL_EFFECT = np.array([0.0, 0.7, 0.35])
# Unobserved causes of fraud: keeps the signal learnable but not trivial.
_LOGIT_NOISE = 0.8


def generate_transactions(
    out_dir: str | Path,
    *,
    rows: int = 100_000,
    days: int = 60,
    start: str = "2026-01-01",
    seed: int = 42,
    variant: str = "reference",
    fmt: Literal["parquet", "csv"] = "parquet",
) -> dict:
    """Write a seeded synthetic card-transaction dataset as daily partitions.

    The folder is replaced as a whole (written next to it, then swapped in), so running
    twice with the same arguments gives byte-identical files and a failed run leaves the
    previous dataset untouched.

    Args:
        out_dir: Folder to (re)write; it must be absent, empty or a dataset written here before.
        rows: Number of transactions (ignored by ``empty``).
        days: Number of daily partitions the transactions spread over.
        start: First day, ``YYYY-MM-DD``.
        seed: Random seed; the same seed gives the same data.
        variant: One of ``VARIANTS``.
        fmt: ``parquet`` or ``csv``.

    Returns:
        A JSON-serialisable summary: ``path``, ``variant``, ``rows``, ``positives``,
        ``positive_rate``, ``files``, ``start`` and ``end`` (first and last day written).

    Raises:
        ValueError: For an unknown variant or format, bad sizes, or an ``out_dir`` that holds
            something other than a generated dataset (it is never deleted then).
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown dataset variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"Unknown format {fmt!r}; choose 'parquet' or 'csv'")
    if rows < 0 or days < 1:
        raise ValueError(f"rows must be >= 0 and days >= 1 (got rows={rows}, days={days})")
    start_ts = pd.Timestamp(start).normalize()
    out = Path(out_dir).expanduser().resolve()
    _check_replaceable(out)

    rng = np.random.default_rng(seed)
    if variant == "empty" or rows == 0:
        # A few real rows give the empty file its column types (an empty text column alone
        # would be written with Arrow's "null" type instead of string).
        frame = _make_frame(rng, 64, days, start_ts, shifted=False, concept="reference")
    elif variant == "label_shift":
        frame = _label_shifted_frame(rng, rows, days, start_ts)
    else:
        frame = _make_frame(
            rng,
            rows,
            days,
            start_ts,
            shifted=variant == "covariate_shift",
            concept="drifted" if variant == "concept_drift" else "reference",
        )
    frame = _break(frame, variant, rng)
    template = frame
    if variant == "empty" or rows == 0:
        frame = frame.iloc[:0]

    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        files, dates = _write_partitions(frame, tmp, fmt, start_ts, template)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)

    positives = int(frame[TARGET_COLUMN].sum()) if len(frame) else 0
    summary = {
        "path": str(out),
        "variant": variant,
        "rows": len(frame),
        "positives": positives,
        "positive_rate": round(positives / len(frame), 5) if len(frame) else 0.0,
        "files": files,
        "start": dates[0],
        "end": dates[-1],
    }
    log.info(
        "Wrote %s dataset: %d rows (%d positives, %.2f%%) in %d %s files under %s",
        variant,
        summary["rows"],
        positives,
        100 * summary["positive_rate"],
        files,
        fmt,
        out,
    )
    return summary


def is_generated_dataset(path: Path) -> bool:
    """True when ``path`` is a folder this module generated (it holds ``GENERATED_MARKER``)."""
    return (Path(path) / GENERATED_MARKER).is_file()


def _check_replaceable(out: Path) -> None:
    """Refuse to replace anything but an empty folder or a dataset this module wrote.

    Partition names are not proof: a user's folder of ``event_date=...`` partitions looks
    the same, so only the marker file written by ``generate_transactions`` counts.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"Output path {out} is a file; give a folder for the daily partitions")
    if is_generated_dataset(out):
        return
    held = sorted(p.name for p in out.iterdir())
    if held:
        raise ValueError(
            f"Refusing to replace {out}: it holds {held[:5]} and was not written by this generator "
            f"(no {GENERATED_MARKER} file); choose an empty or new folder"
        )


def _pick(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``probs`` (each row sums to 1), vectorised."""
    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = 1.0  # guard against rounding below 1
    u = rng.random(len(probs))[:, None]
    return (u > cum).sum(axis=1)


def _make_frame(
    rng: np.random.Generator,
    n: int,
    days: int,
    start: pd.Timestamp,
    *,
    shifted: bool,
    concept: Literal["reference", "drifted"],
) -> pd.DataFrame:
    """Draw ``n`` transactions (inputs, then the label), sorted by event time."""
    # Cards: home region, holder's age, card age at the start, and how busy the card is.
    n_cards = max(50, n // 20)
    card_region = rng.choice(len(REGIONS), size=n_cards, p=_REGION_MIX)
    card_holder_age = np.clip(rng.normal(45, 15, n_cards), 18, 95).astype(np.int64)
    is_new = rng.random(n_cards) < 0.06
    card_start_age = np.where(
        is_new, rng.integers(0, 30, n_cards), np.clip(rng.lognormal(np.log(900), 0.8, n_cards), 30, 15_000)
    ).astype(np.int64)
    card_rate = rng.gamma(2.0, 0.6, n_cards)
    card_weight = rng.gamma(1.5, 1.0, n_cards)
    card = rng.choice(n_cards, size=n, p=card_weight / card_weight.sum())
    region = card_region[card]

    # When: a mild weekly pattern over the days, channel-specific hours of the day.
    day_weight = 1.0 + 0.15 * np.isin((start.dayofweek + np.arange(days)) % 7, (4, 5))
    day = rng.choice(days, size=n, p=day_weight / day_weight.sum())

    channel_mix = _CHANNEL_MIX[region]
    if shifted:
        channel_mix = channel_mix * np.array([0.7, 1.9, 0.8])
        channel_mix /= channel_mix.sum(axis=1, keepdims=True)
    channel = _pick(rng, channel_mix)
    category_mix = _CATEGORY_MIX[channel] * _CATEGORY_TILT[region]
    if shifted:
        category_mix = category_mix * np.array([0.6, 0.7, 1.8, 1.4, 0.8, 1.5, 1.2, 1.0])
    category = _pick(rng, category_mix / category_mix.sum(axis=1, keepdims=True))
    hour = _pick(rng, (_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum(axis=1, keepdims=True))[channel])
    seconds = rng.integers(0, 3600, n)

    amount_mu = np.log(_AMOUNT_MEDIAN[category]) + (0.35 if shifted else 0.0)
    amount = np.clip(rng.lognormal(amount_mu, _AMOUNT_SIGMA[category]), 0.5, 50_000).round(2)

    intl_rate = _INTERNATIONAL_RATE[channel] * _INTERNATIONAL_TILT[region] * (2.0 if shifted else 1.0)
    international = rng.random(n) < intl_rate
    distance = np.where(
        international, rng.lognormal(np.log(900), 0.8, n), rng.lognormal(np.log(6), 1.1, n)
    ).clip(0, 20_000)
    distance = distance.round(1)
    txn_count = rng.poisson(card_rate[card]) + np.where(rng.random(n) < 0.04, rng.poisson(6, n), 0)
    txn_count = np.clip(txn_count, 0, 500)
    card_age = card_start_age[card] + day
    holder_age = card_holder_age[card]

    logit = _fraud_logit(
        concept,
        amount=amount,
        category=category,
        channel=channel,
        region=region,
        hour=hour,
        distance=distance,
        card_age=card_age,
        txn_count=txn_count,
        holder_age=holder_age,
        international=international,
    ) + rng.normal(0.0, _LOGIT_NOISE, n)
    is_fraud = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)

    # Distance is unknown for some transactions (no merchant geolocation); drawn after the
    # label so that missingness carries no signal.
    distance = np.where(rng.random(n) < _DISTANCE_NULL_RATE, np.nan, distance)

    event_time = start + pd.to_timedelta(day * 86_400 + hour * 3_600 + seconds, unit="s")
    card_names = np.array([f"card_{i:06d}" for i in range(n_cards)], dtype=object)
    frame = pd.DataFrame(
        {
            TIME_COLUMN: event_time,
            ENTITY_COLUMN: card_names[card],
            "amount": amount,
            "merchant_category": np.array(CATEGORIES, dtype=object)[category],
            "channel": np.array(CHANNELS, dtype=object)[channel],
            "region": np.array(REGIONS, dtype=object)[region],
            "hour_of_day": hour.astype(np.int64),
            "distance_from_home_km": distance,
            "card_age_days": card_age.astype(np.int64),
            "txn_count_24h": txn_count.astype(np.int64),
            "customer_age": holder_age.astype(np.int64),
            "is_international": international,
            TARGET_COLUMN: is_fraud,
        }
    )
    return frame.sort_values([TIME_COLUMN, ENTITY_COLUMN], kind="stable").reset_index(drop=True)


def _fraud_logit(
    concept: Literal["reference", "drifted"],
    *,
    amount: np.ndarray,
    category: np.ndarray,
    channel: np.ndarray,
    region: np.ndarray,
    hour: np.ndarray,
    distance: np.ndarray,
    card_age: np.ndarray,
    txn_count: np.ndarray,
    holder_age: np.ndarray,
    international: np.ndarray,
) -> np.ndarray:
    """Log-odds of fraud given the inputs (before the noise of unobserved causes)."""
    unusual_amount = np.log(amount / _AMOUNT_MEDIAN[category])
    new_card = card_age < 30
    busy = np.minimum(txn_count, 15)
    if concept == "reference":
        # Classic card-present/online fraud: large, unusual amounts at night, far from home,
        # on new or suddenly busy cards.
        night = np.isin(hour, (0, 1, 2, 3, 4, 5))
        late = np.isin(hour, (22, 23))
        return (
            _INTERCEPT_REFERENCE
            + 1.3 * night
            + 0.5 * late
            + 0.65 * unusual_amount
            + 0.3 * np.log1p(amount)
            + 0.36 * np.log1p(distance)
            + 0.22 * busy
            + 1.55 * new_card
            + 0.95 * international
            + 0.35 * (holder_age >= 70)
            + _CATEGORY_EFFECT[category]
            + _REGION_EFFECT[region]
            + _CHANNEL_EFFECT[channel]
        )
    # Drifted concept: fraudsters test stolen cards with small daytime purchases in gaming
    # and online retail; night, distance and large amounts no longer say much.
    daytime = (hour >= 9) & (hour <= 17)
    target_merchant = np.isin(category, (CATEGORIES.index("gaming"), CATEGORIES.index("online_retail")))
    return (
        _INTERCEPT_CONCEPT
        + 0.9 * daytime
        - 0.6 * unusual_amount
        + 1.8 * target_merchant
        + 0.05 * np.log1p(distance)
        + 0.25 * busy
        + 0.8 * new_card
        + 0.3 * international
        + 0.5 * _REGION_EFFECT[region]
        + 0.8 * (channel == CHANNELS.index("online"))
    )


def _label_shifted_frame(rng: np.random.Generator, n: int, days: int, start: pd.Timestamp) -> pd.DataFrame:
    """Reference transactions with about three times the fraud share and P(x | fraud) unchanged.

    Draws a larger reference pool, keeps every fraud and a third of the legitimate rows
    (rejection sampling), then takes ``n`` of them.
    """
    pool = _make_frame(rng, int(n * 3.4) + 100, days, start, shifted=False, concept="reference")
    keep = (pool[TARGET_COLUMN].to_numpy() == 1) | (rng.random(len(pool)) < 1 / 3)
    kept = np.flatnonzero(keep)
    chosen = np.sort(rng.choice(kept, size=min(n, len(kept)), replace=False))
    return pool.iloc[chosen].reset_index(drop=True)


def _break(frame: pd.DataFrame, variant: str, rng: np.random.Generator) -> pd.DataFrame:
    """Damage a valid frame the way ``variant`` says (a no-op for the valid variants)."""
    frame = frame.copy()
    n = len(frame)
    if variant == "missing_column":
        frame = frame.drop(columns=["merchant_category"])
    elif variant == "wrong_type":
        # A locale mix-up: amounts exported as text with decimal commas ("12,50"), which
        # stays text in CSV as well as in Parquet.
        frame["amount"] = frame["amount"].map(lambda v: f"{v:.2f}".replace(".", ",")).astype(object)
    elif variant == "nulls":
        frame.loc[rng.random(n) < 0.3, "amount"] = np.nan
    elif variant == "out_of_range":
        refunds = rng.random(n) < 0.02
        frame.loc[refunds, "amount"] = -frame.loc[refunds, "amount"]
        bad_hours = rng.random(n) < 0.02
        frame.loc[bad_hours, "hour_of_day"] = rng.integers(24, 31, int(bad_hours.sum()))
    elif variant == "duplicate_rows":
        # A partition loaded twice: 5% of the rows appear a second time.
        again = frame.iloc[np.sort(rng.choice(n, size=n // 20, replace=False))]
        frame = pd.concat([frame, again]).sort_values([TIME_COLUMN, ENTITY_COLUMN], kind="stable")
    elif variant == "time_as_text":
        # Event times exported as ISO text ("2026-01-01T08:15:00") instead of timestamps.
        frame[TIME_COLUMN] = frame[TIME_COLUMN].dt.strftime("%Y-%m-%dT%H:%M:%S").astype(object)
    elif variant == "class_sorted":
        # An export ordered by label before event times were stamped: every fraud comes first,
        # so the latest 20% (the time-based holdout) holds no fraud at all.
        times = frame[TIME_COLUMN].sort_values().to_numpy()
        frame = frame.sort_values(TARGET_COLUMN, ascending=False, kind="stable").reset_index(drop=True)
        frame[TIME_COLUMN] = times
    return frame.reset_index(drop=True)


def _write_partitions(
    frame: pd.DataFrame, folder: Path, fmt: str, start: pd.Timestamp, template: pd.DataFrame
) -> tuple[int, list[str]]:
    """Write one file per event date (one valid-schema file when there are no rows).

    Every Parquet file gets the Arrow schema of ``template`` (a non-empty frame with the
    same columns), so even a zero-row file carries proper column types.
    """
    import pyarrow as pa

    schema = pa.Schema.from_pandas(template, preserve_index=False)
    folder.mkdir(parents=True)
    (folder / GENERATED_MARKER).write_text(
        "Generated by include.modelops.data.example.generate_transactions; "
        "the generator may replace this folder.\n"
    )
    if frame.empty:
        groups = [(start.strftime("%Y-%m-%d"), frame)]
    else:
        dates = pd.to_datetime(frame[TIME_COLUMN]).dt.strftime("%Y-%m-%d")
        groups = list(frame.groupby(dates, sort=True))
    for i, (date, part) in enumerate(groups, start=1):
        part_dir = folder / f"{PARTITION_KEY}={date}"
        part_dir.mkdir()
        target = part_dir / f"part-0000.{fmt}"
        part = part.reset_index(drop=True)
        if fmt == "parquet":
            part.to_parquet(target, index=False, schema=schema)
        else:
            part.to_csv(target, index=False)
        if i % 10 == 0 or i == len(groups):
            log.info("Wrote %d/%d daily partitions (%s)", i, len(groups), date)
    return len(groups), [groups[0][0], groups[-1][0]]


def main(argv: list[str] | None = None) -> int:
    """Command line: write a dataset and print a one-line summary."""
    parser = argparse.ArgumentParser(
        prog="python -m include.modelops.data.example",
        description="Write a synthetic card-transaction fraud dataset as daily partitions.",
    )
    parser.add_argument("--out", required=True, help="Folder to (re)write.")
    parser.add_argument("--rows", type=int, default=100_000, help="Number of transactions.")
    parser.add_argument("--days", type=int, default=60, help="Number of daily partitions.")
    parser.add_argument("--start", default="2026-01-01", help="First day, YYYY-MM-DD.")
    parser.add_argument("--seed", type=int, default=42, help="Random seed.")
    parser.add_argument("--variant", default="reference", choices=VARIANTS, help="Which dataset to write.")
    parser.add_argument("--format", dest="fmt", default="parquet", choices=("parquet", "csv"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        s = generate_transactions(
            args.out,
            rows=args.rows,
            days=args.days,
            start=args.start,
            seed=args.seed,
            variant=args.variant,
            fmt=args.fmt,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{s['variant']}: {s['rows']} rows, {s['positives']} fraud ({100 * s['positive_rate']:.2f}%), "
        f"{s['files']} files, {s['start']} to {s['end']} -> {s['path']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
