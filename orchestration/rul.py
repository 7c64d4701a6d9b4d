"""Remaining useful life, learned from the thread's own failure history.

For every product, each unit with telemetry and a recorded `failure` service event gives labelled
readings: the hours from that reading to the unit's next failure. Features are each sensor's
rolling means over the unit's last 10 and 30 readings and an exponential average, each also as a
difference from the unit's own first 20 readings (so unit-to-unit build variation cancels and the
wear remains), plus the unit's hours in service. The target is capped at 125 reading intervals
(the C-MAPSS literature's 125 cycles).
A gradient-boosted regressor learns it; units held out by serial number measure it (RMSE and the
PHM08 score; each held-out unit is cut at 10 random points of its last 150 readings and predicted
at the cut, as the published test sets are). Nothing here knows a product: any unit with telemetry and failures works.
"""

from __future__ import annotations

import hashlib
import pickle
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import lake

CAP_INTERVALS = 125
WINDOWS = (10, 30)
EWM_ALPHA = 0.1
BASELINE_READINGS = 20
# Readings kept at the end of each unit's series for its estimate: the 30-reading window, and
# enough history that the exponential average has forgotten the gap to the baseline (0.9^60).
TAIL_READINGS = 60
MAX_TRAIN_UNITS = 2_000
CUTS_PER_UNIT = 10
HELD_OUT_SHARE = 0.2
MAX_TRAIN_ROWS = 300_000
SEED = 7
ESTIMATE_SCHEMA = pa.schema([
    ("serial_number", pa.string()), ("product_part_number", pa.string()), ("rul_hours", pa.float64()),
    ("rul_model_version", pa.string()), ("as_of", pa.timestamp("us", tz="UTC")),
])
VERSION_SCHEMA = pa.schema([
    ("product_part_number", pa.string()), ("version", pa.string()), ("trained_at", pa.timestamp("us", tz="UTC")),
    ("failures_fingerprint", pa.string()), ("training_units", pa.int64()), ("held_out_units", pa.int64()),
    ("training_rows", pa.int64()), ("data_from", pa.timestamp("us", tz="UTC")),
    ("data_to", pa.timestamp("us", tz="UTC")), ("cap_hours", pa.float64()), ("rmse_hours", pa.float64()),
    ("phm08_score", pa.float64()), ("train_seconds", pa.float64()), ("path", pa.string()),
])

# What each version row says (published as twin.rul_models, without the model file's path).
VERSIONS_DESCRIPTION = ("Every remaining-useful-life model version (twin.unit_twin.rul_model_version): what it was "
                        "learned from and how well it did on units held out of training.")
VERSION_COLUMNS = {
    "product_part_number": "The product the model is for.",
    "version": "`<product>/v<n>`; a new version when the product's recorded failures change.",
    "trained_at": "When it was trained.",
    "failures_fingerprint": "Which failure records it was learned from.",
    "training_units": "Units with a recorded failure it learned from.",
    "held_out_units": "Failed units kept out of training to measure it; 0: too few failures, not validated.",
    "training_rows": "Labelled readings it learned from.",
    "data_from": "First reading it learned from.",
    "data_to": "Last reading it learned from.",
    "cap_hours": "Its estimates never exceed this (125 reading intervals): a healthy unit reads as the cap.",
    "rmse_hours": "Root-mean-square error on the held-out units, hours; null when not validated.",
    "phm08_score": "The PHM08 score on the held-out units (late estimates cost more); null when not validated.",
    "train_seconds": "How long training took.",
}


def models_dir(lake_dir: Path) -> Path:
    return lake.location(lake_dir) / "health"


def phm08_score(predicted: np.ndarray, actual: np.ndarray) -> float:
    """The PHM08 challenge score: late predictions cost more than early ones."""
    d = np.asarray(predicted, float) - np.asarray(actual, float)
    return float(np.sum(np.where(d < 0, np.exp(-d / 13.0) - 1, np.exp(d / 10.0) - 1)))


def readings(con, product: str, serials: list[str] | None = None) -> pd.DataFrame:
    """The product's telemetry, one row per unit and reading time, one column per sensor (DuckDB
    pivots it). `serials` limits it to some units."""
    return _wide(con, _long_readings(con, [product], serials))


def latest_readings(con, products: list[str]) -> dict[str, pd.DataFrame]:
    """Per product, as `readings`, each unit's first readings (its baseline) and its last ones
    (enough for every feature at the latest reading), which bounds the work for a whole fleet's
    estimates: one pass over the telemetry for every product (one per product, and a window over
    every reading time, took three times as long)."""
    long = _long_readings(con, products, ends_only=True)
    return {p: _wide(con, long.filter(pc.equal(long["product_part_number"], p))) for p in products}


def _long_readings(con, products: list[str], serials: list[str] | None = None, ends_only: bool = False) -> pa.Table:
    """Readings of the products' units, one row per unit, time and sensor (the mean of duplicates);
    `ends_only`: only each unit's first BASELINE_READINGS and last TAIL_READINGS reading times."""
    only = "AND u.serial_number IN (SELECT unnest($serials))" if serials is not None else ""
    sql = f"""
        WITH t AS (
            SELECT u.product_part_number, t.serial_number, t.ts, t.sensor, t.value
            FROM staging.stg_service__telemetry t JOIN thread.units u USING (serial_number)
            WHERE u.product_part_number IN (SELECT unnest($products)) {only})"""
    kept = "t"
    if ends_only:  # the n-th first and n-th last reading time of each unit bound its ends
        sql += f""",
        ends AS (
            SELECT serial_number, list_last(min(ts, {BASELINE_READINGS})) AS baseline_until,
                   list_last(max(ts, {TAIL_READINGS})) AS tail_from
            FROM (SELECT DISTINCT serial_number, ts FROM t) GROUP BY serial_number)"""
        kept = "t JOIN ends USING (serial_number) WHERE ts <= baseline_until OR ts >= tail_from"
    sql += f" SELECT product_part_number, serial_number, ts, sensor, avg(value) AS value FROM {kept} GROUP BY ALL"
    params = {"products": products} | ({"serials": serials} if serials is not None else {})
    return con.execute(sql, params).fetch_arrow_table()


def _wide(con, long: pa.Table) -> pd.DataFrame:
    kept = long.drop_columns(["product_part_number"])  # noqa: F841 - read by name below
    # PIVOT takes no parameters, so it runs on the fetched rows in a scratch connection.
    scratch = lake.duck(memory_limit=con.execute("SELECT current_setting('memory_limit')").fetchone()[0])
    try:
        wide = scratch.execute("PIVOT kept ON sensor USING avg(value) GROUP BY serial_number, ts "
                               "ORDER BY serial_number, ts").df()
    finally:
        scratch.close()
    if wide.empty:
        return pd.DataFrame(columns=["serial_number", "ts"])
    return wide.reset_index(drop=True)


def features(wide: pd.DataFrame, sensors: list[str]) -> pd.DataFrame:
    """Only looks back in time, so the features at a reading are those of the series cut there.
    `wide` is sorted by unit and time."""
    key = wide["serial_number"]
    g = wide.groupby(key, sort=False)
    first = g.cumcount() < BASELINE_READINGS
    out = {"age_h": (wide["ts"] - g["ts"].transform("min")).dt.total_seconds() / 3600}
    for s in sensors:
        col = wide[s].astype("float64")
        by = col.groupby(key, sort=False)
        base = col.where(first).groupby(key, sort=False).transform("mean")
        for w in WINDOWS:
            mean = by.rolling(w, min_periods=1).mean().reset_index(level=0, drop=True)
            out[f"{s}_mean{w}"] = mean
            out[f"{s}_drift{w}"] = mean - base
        out[f"{s}_ewm_drift"] = by.ewm(alpha=EWM_ALPHA).mean().reset_index(level=0, drop=True) - base
    return pd.DataFrame(out, index=wide.index)


def last_features(wide: pd.DataFrame, sensors: list[str]) -> pd.DataFrame:
    """`features` at each unit's last reading only (one row per unit, in `wide`'s order of units),
    equal to within floating-point rounding: each as a sum over the rows that matter rather than
    rolled along every row. An estimate needs no other row (at 10,000 units 0.2 s, not 2.4 s).
    `wide` is sorted by unit and time."""
    codes, _ = pd.factorize(wide["serial_number"], sort=False)
    n = int(codes.max()) + 1 if len(codes) else 0
    starts = np.searchsorted(codes, np.arange(n))
    ends = np.append(starts[1:], len(codes)) - 1
    pos = np.arange(len(codes)) - starts[codes]
    from_last = ends[codes] - np.arange(len(codes))
    ts = wide["ts"]
    out = {"age_h": (ts.iloc[ends].to_numpy() - ts.iloc[starts].to_numpy()) / np.timedelta64(1, "h")}

    def mean_over(values: np.ndarray, rows: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Per unit, the (weighted) mean of its non-missing values in `rows`; NaN where none."""
        ok = rows & ~np.isnan(values)
        w = np.ones(len(values)) if weights is None else weights
        total = np.bincount(codes[ok], weights=values[ok] * w[ok], minlength=n)
        count = np.bincount(codes[ok], weights=w[ok], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / count, np.nan)

    everything = np.ones(len(codes), bool)
    for s in sensors:
        col = wide[s].to_numpy(dtype="float64")
        base = mean_over(col, pos < BASELINE_READINGS)
        for w in WINDOWS:
            mean = mean_over(col, from_last < w)
            out[f"{s}_mean{w}"] = mean
            out[f"{s}_drift{w}"] = mean - base
        # pandas' ewm (adjust=True, missing values keep their place): (1 - alpha)^(rows to the last)
        out[f"{s}_ewm_drift"] = mean_over(col, everything, (1 - EWM_ALPHA) ** from_last) - base
    return pd.DataFrame(out, index=wide.index[ends])


def failures(con, product: str) -> pd.DataFrame:
    return con.execute("""
        SELECT e.serial_number, e.occurred_at AS failed_at
        FROM thread.service_events e JOIN thread.units u USING (serial_number)
        WHERE e.event_type = 'failure' AND u.product_part_number = ? ORDER BY 1, 2""", [product]).df()


def fingerprint(fails: pd.DataFrame) -> str:
    rows = sorted(f"{s}@{t}" for s, t in zip(fails["serial_number"], fails["failed_at"], strict=True))
    return hashlib.sha1(";".join(rows).encode()).hexdigest()[:16]


def label(wide: pd.DataFrame, fails: pd.DataFrame) -> pd.Series:
    """Hours from each reading to its unit's next failure (NaN after the last one)."""
    if fails.empty:
        return pd.Series(np.nan, index=wide.index)
    left = wide[["serial_number", "ts"]].reset_index().sort_values("ts")
    right = fails.rename(columns={"failed_at": "ts_fail"}).sort_values("ts_fail")
    right["ts_fail"] = pd.to_datetime(right["ts_fail"], utc=True)
    left["ts"] = pd.to_datetime(left["ts"], utc=True)
    merged = pd.merge_asof(left, right, left_on="ts", right_on="ts_fail", by="serial_number", direction="forward")
    hours = (merged["ts_fail"] - merged["ts"]).dt.total_seconds() / 3600
    return pd.Series(hours.to_numpy(), index=merged["index"]).sort_index()


@dataclass
class Trained:
    product: str
    model: object
    sensors: list[str]
    cap_hours: float
    metrics: dict = field(default_factory=dict)


def _regressor():
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                         min_samples_leaf=80, random_state=SEED)


@contextmanager
def _one_openmp_thread():
    """Gradient boosting on one OpenMP thread. Its trees run thousands of short parallel regions,
    each ending at a barrier: when another process holds a core (a concurrent run, the test suite's
    second worker, `thread serve` beside a build), every barrier waits out a time slice. On the
    bench's M enterprise (2 cores, another build beside it) the three products trained in 513 s
    inside a full build; with a lighter process beside it, 15.4 s on two threads and 3.6 s on one."""
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime the limit applies to)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _held_out(units: list[str]) -> set[str]:
    rng = np.random.default_rng(SEED)
    n = max(1, int(round(len(units) * HELD_OUT_SHARE))) if len(units) >= 5 else 0
    return set(rng.choice(sorted(units), size=n, replace=False)) if n else set()


@_one_openmp_thread()
def train(wide: pd.DataFrame, fails: pd.DataFrame, product: str) -> Trained | None:
    """A model for one product, or None when it has no unit with both telemetry and a failure."""
    y = label(wide, fails)
    # A sensor that never moves says nothing about wear.
    sensors = [c for c in wide.columns if c not in ("serial_number", "ts") and wide[c].std() > 1e-9]
    labelled = y.notna()
    units = sorted(wide.loc[labelled, "serial_number"].unique())
    if not units or not sensors:
        return None
    interval = wide.groupby("serial_number")["ts"].diff().dt.total_seconds().median() / 3600
    cap = CAP_INTERVALS * (interval if interval and interval > 0 else 1.0)
    X = features(wide, sensors)
    held = _held_out(units)
    is_held = wide["serial_number"].isin(held)
    train_mask = labelled & ~is_held
    idx = np.flatnonzero(train_mask.to_numpy())
    if len(idx) > MAX_TRAIN_ROWS:
        idx = np.sort(np.random.default_rng(SEED).choice(idx, MAX_TRAIN_ROWS, replace=False))
    started = time.monotonic()
    model = _regressor().fit(X.iloc[idx], y.iloc[idx].clip(upper=cap))
    seconds = time.monotonic() - started
    metrics = {"training_units": len(units) - len(held), "held_out_units": len(held), "training_rows": len(idx),
               "train_seconds": round(seconds, 2), "cap_hours": cap}
    pred, truth = _evaluate(model, X, y, wide, held, labelled) if held else (np.array([]), np.array([]))
    if len(truth):
        metrics.update(rmse_hours=float(np.sqrt(np.mean((pred - truth) ** 2))), phm08_score=phm08_score(pred, truth),
                       evaluated_cuts=len(truth))
    return Trained(product, model, sensors, cap, metrics)


def _evaluate(model, X, y, wide, held, labelled):
    """Each held-out unit cut at random readings among its last 150 before failure; predict there.
    Features only look back, so predicting at a row is predicting on the series cut there."""
    rng = np.random.default_rng(SEED + 1)
    cuts = []
    for serial in sorted(held):
        rows = np.flatnonzero((wide["serial_number"] == serial).to_numpy() & labelled.to_numpy())
        if len(rows) >= 2:
            cuts += list(rows[rng.integers(max(0, len(rows) - 150), len(rows), size=CUTS_PER_UNIT)])
    if not cuts:
        return np.array([]), np.array([])
    return model.predict(X.iloc[cuts]), y.iloc[cuts].to_numpy(dtype=float)


@_one_openmp_thread()
def estimate(trained: Trained, wide: pd.DataFrame) -> pd.DataFrame:
    """The estimate at each unit's latest reading (`wide` sorted by unit and time)."""
    X = last_features(wide, trained.sensors)
    pred = np.clip(trained.model.predict(X), 0, None)
    return pd.DataFrame({"serial_number": wide.loc[X.index, "serial_number"].to_numpy(),
                         "rul_hours": np.round(pred, 1), "as_of": wide.loc[X.index, "ts"].to_numpy()})


def latest_versions(lake_dir: Path) -> dict[str, dict]:
    t = lake.read(models_dir(lake_dir) / "rul_versions")
    if t is None or not t.num_rows:
        return {}
    df = t.to_pandas().sort_values("trained_at")
    return {r["product_part_number"]: r for r in df.groupby("product_part_number").tail(1).to_dict("records")}


def save(lake_dir: Path, trained: Trained, fails: pd.DataFrame, wide: pd.DataFrame, now: datetime,
         run_id: str, previous: dict | None) -> dict:
    """Store a new version after `previous` (the product's latest, or None)."""
    number = int(previous["version"].rsplit("v", 1)[1]) + 1 if previous else 1
    version = f"{trained.product}/v{number}"
    path = models_dir(lake_dir) / "rul_models" / trained.product / f"v{number}.pkl"
    if not lake.is_remote(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump({"model": trained.model, "sensors": trained.sensors, "cap_hours": trained.cap_hours}, f)
    m = trained.metrics
    row = {"product_part_number": trained.product, "version": version, "trained_at": now,
           "failures_fingerprint": fingerprint(fails), "training_units": m["training_units"],
           "held_out_units": m["held_out_units"], "training_rows": m["training_rows"],
           "data_from": pd.Timestamp(wide["ts"].min()).to_pydatetime(),
           "data_to": pd.Timestamp(wide["ts"].max()).to_pydatetime(),
           "cap_hours": float(trained.cap_hours), "rmse_hours": m.get("rmse_hours"),
           "phm08_score": m.get("phm08_score"), "train_seconds": m["train_seconds"],
           # Relative to the lake, so a data directory can move.
           "path": str(path.relative_to(lake.location(lake_dir)))}
    lake.write(models_dir(lake_dir) / "rul_versions",
               pa.table({f.name: pa.array([row[f.name]], f.type) for f in VERSION_SCHEMA}, schema=VERSION_SCHEMA),
               "append", batch_id=run_id)
    return row


def load(lake_dir: Path, row: dict) -> Trained:
    with (lake.location(lake_dir) / row["path"]).open("rb") as f:
        saved = pickle.load(f)  # noqa: S301 - our own file under the lake, written by `save`
    return Trained(row["product_part_number"], saved["model"], saved["sensors"], saved["cap_hours"])


def refresh(build_db: Path, lake_dir: Path, now: datetime, run_id: str,
            memory_limit: str = lake.DEFAULT_MEMORY_LIMIT, readings_unchanged: bool = False) -> dict:
    """Retrain each product whose failures changed, then estimate every unit with telemetry.
    `readings_unchanged`: the telemetry and units the estimates read are as at the last estimates;
    then, when no product's model changed either, the stored estimates are kept as they are (a
    service event that is no failure changes no estimate)."""
    con = lake.duck(build_db, read_only=True, memory_limit=memory_limit)
    try:
        products = [p for (p,) in con.execute(
            "SELECT DISTINCT product_part_number FROM thread.units ORDER BY 1").fetchall()]
        known = latest_versions(lake_dir)
        report = {"trained": [], "kept": [], "without_failures": []}
        models: dict[str, tuple[Trained | None, dict]] = {}  # a kept model is loaded only to estimate
        for product in products:
            fails = failures(con, product)
            if fails.empty:
                report["without_failures"].append(product)
                continue
            row = known.get(product)
            if row is None or row["failures_fingerprint"] != fingerprint(fails):
                # Whole histories of the failed units (a sample of them for a big fleet).
                failed = sorted(fails["serial_number"].unique())
                if len(failed) > MAX_TRAIN_UNITS:
                    failed = sorted(np.random.default_rng(SEED).choice(failed, MAX_TRAIN_UNITS, replace=False))
                history = readings(con, product, serials=list(failed))
                trained = train(history, fails, product) if not history.empty else None
                if trained is None:
                    report["without_failures"].append(product)
                    continue
                row = save(lake_dir, trained, fails, history, now, run_id, previous=row)
                report["trained"].append(row)
                models[product] = (trained, row)
            else:
                report["kept"].append(row)
                models[product] = (None, row)
        if readings_unchanged and _estimated_with(lake_dir) == {p: row["version"] for p, (_, row) in models.items()}:
            report["estimated_units"], report["estimates_kept"] = 0, True
            return report
        estimates = []
        latest = latest_readings(con, list(models))
        for product, (trained, row) in models.items():
            wide = latest[product]
            if wide.empty:
                continue
            est = estimate(trained or load(lake_dir, row), wide)
            est["product_part_number"] = product
            est["rul_model_version"] = row["version"]
            estimates.append(est)
    finally:
        con.close()
    frame = pd.concat(estimates, ignore_index=True) if estimates else pd.DataFrame(columns=ESTIMATE_SCHEMA.names)
    frame["as_of"] = pd.to_datetime(frame["as_of"], utc=True)
    table = pa.Table.from_pandas(frame[ESTIMATE_SCHEMA.names], schema=ESTIMATE_SCHEMA, preserve_index=False)
    lake.write(models_dir(lake_dir) / "rul_estimates", table, "overwrite", batch_id=run_id)
    report["estimated_units"], report["estimates_kept"] = table.num_rows, False
    return report


def _estimated_with(lake_dir: Path) -> dict[str, str] | None:
    """The model version behind each product's stored estimates (None: no estimates stored yet)."""
    t = lake.read(models_dir(lake_dir) / "rul_estimates", columns=["product_part_number", "rul_model_version"])
    if t is None:
        return None
    return {p: v for p, v in zip(t["product_part_number"].to_pylist(), t["rul_model_version"].to_pylist(),
                                 strict=True)}


def estimates(lake_dir: Path) -> pa.Table:
    t = lake.read(models_dir(lake_dir) / "rul_estimates")
    return t if t is not None else ESTIMATE_SCHEMA.empty_table()
