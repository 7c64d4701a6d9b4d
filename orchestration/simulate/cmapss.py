"""A sources root for a turbofan fleet from NASA's C-MAPSS run-to-failure data (real telemetry).

Product `TF-1` is a six-module turbofan (fan, LPC, HPC, combustor, HPT, LPT). Each engine of the
file becomes unit `TF1-000001`, ... (in file order), built, shipped and installed; cycle *c* of an
engine is a telemetry reading at `installed_at + c hours`, one row per sensor, with the sensors
named exactly as C-MAPSS names them. Engines of a training file ran to failure: each gets a
`failure` service event at its last cycle (the HPC, FD001's fault mode). With `live`, the
trajectories are the units still running: no failure events.

Everything is written exactly as docs/source-interfaces.md says, so the pipeline treats
it like any other enterprise; nothing downstream knows it came from C-MAPSS.
"""

from __future__ import annotations

import gzip
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import MES_DDL, Summary, _csv, _jsonl

SENSORS = ["T2", "T24", "T30", "T50", "P2", "P15", "P30", "Nf", "Nc", "epr", "Ps30", "phi", "NRf", "NRc",
           "BPR", "farB", "htBleed", "Nf_dmd", "PCNfR_dmd", "W31", "W32"]
SETTINGS = ["op_setting_1", "op_setting_2", "op_setting_3"]
UNITS_OF = {"T2": "degR", "T24": "degR", "T30": "degR", "T50": "degR", "P2": "psia", "P15": "psia",
            "P30": "psia", "Nf": "rpm", "Nc": "rpm", "epr": "ratio", "Ps30": "psia", "phi": "pps/psi",
            "NRf": "rpm", "NRc": "rpm", "BPR": "ratio", "farB": "ratio", "htBleed": "count", "Nf_dmd": "rpm",
            "PCNfR_dmd": "rpm", "W31": "lbm/s", "W32": "lbm/s",
            "op_setting_1": "setting", "op_setting_2": "setting", "op_setting_3": "setting"}
PRODUCT = "TF-1"
MODULES = [("TF-FAN", "Fan module"), ("TF-LPC", "Low-pressure compressor module"),
           ("TF-HPC", "High-pressure compressor module"), ("TF-COMB", "Combustor module"),
           ("TF-HPT", "High-pressure turbine module"), ("TF-LPT", "Low-pressure turbine module")]
FAILED_MODULE = "TF-HPC"  # FD001's single fault mode: HPC degradation
DEFAULT_FILE = Path(__file__).resolve().parents[2] / "data" / "reference" / "cmapss" / "train_FD001.txt.gz"
ORIGIN = datetime(2024, 1, 1, tzinfo=timezone.utc)


def read(path: Path) -> pd.DataFrame:
    """A C-MAPSS file (plain or gzip): engine, cycle, three settings, 21 sensors per line."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        frame = pd.read_csv(f, sep=r"\s+", header=None)
    frame = frame.iloc[:, : 2 + len(SETTINGS) + len(SENSORS)]
    frame.columns = ["engine", "cycle", *SETTINGS, *SENSORS]
    return frame


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def limits(frame: pd.DataFrame) -> list[list]:
    """Design limits per sensor (and operating setting) from the fleet itself: a sensor that rises with wear gets its
    warning at 4 and its critical limit at 6 standard deviations above its healthy level (first
    20 cycles); one that does not rise gets limits just above anything observed (the spec has
    high limits only)."""
    rows = []
    life = frame.groupby("engine")["cycle"].transform("max")
    worn = frame["cycle"] / life
    healthy = frame[frame["cycle"] <= 20]
    for sensor in SENSORS + SETTINGS:
        mu, sd = healthy[sensor].mean(), healthy[sensor].std()
        top = frame[sensor].max()
        rises = sensor in SENSORS and sd > 0 and frame[sensor].std() > 0 and np.corrcoef(worn, frame[sensor])[0, 1] > 0.3
        if rises:
            warning, critical = mu + 4 * sd, mu + 6 * sd
        else:
            margin = max(abs(top) * 0.01, 1e-6)
            warning, critical = top + margin, top + 2 * margin
        rows.append([PRODUCT, sensor, UNITS_OF[sensor], round(float(warning), 6), round(float(critical), 6)])
    return rows


def write(out: Path, file: Path | None = None, live: bool = False) -> Summary:
    out = Path(out)
    if (out / "mes" / "mes.sqlite").exists():
        raise FileExistsError(f"{out} already holds an enterprise")
    frame = read(Path(file) if file else DEFAULT_FILE)
    for d in ("plm", "erp", "mes", "service/telemetry"):
        (out / d).mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    engines = sorted(frame["engine"].unique())
    serial = {e: f"TF1-{i:06d}" for i, e in enumerate(engines, start=1)}
    created = _iso(ORIGIN - timedelta(days=400))

    # PLM: the product, its six modules, revision A of each, the one-level EBOM, the limits.
    parts = [[PRODUCT, "Turbofan engine TF-1", "product", "make", "ea", created]]
    parts += [[p, name, "assembly", "make", "ea", created] for p, name in MODULES]
    _csv(out / "plm" / "parts.csv", ["part_number", "name", "part_type", "make_buy", "unit_of_measure", "created_at"],
         parts, counts, "plm.parts")
    _csv(out / "plm" / "part_revisions.csv", ["part_number", "revision", "state", "released_at", "eco_number",
                                              "description"],
         [[p[0], "A", "released", created, None, "Initial release"] for p in parts], counts, "plm.part_revisions")
    _csv(out / "plm" / "bom_lines.csv", ["parent_part_number", "parent_revision", "find_number", "child_part_number",
                                         "quantity"],
         [[PRODUCT, "A", 10 * (i + 1), p, 1] for i, (p, _) in enumerate(MODULES)], counts, "plm.bom_lines")
    _csv(out / "plm" / "ecos.csv", ["eco_number", "title", "reason", "state", "created_at", "released_at",
                                    "effectivity_type", "effective_from", "field_action"], [], counts, "plm.ecos")
    _csv(out / "plm" / "eco_affected_items.csv", ["eco_number", "part_number", "from_revision", "to_revision"], [],
         counts, "plm.eco_affected_items")
    _csv(out / "plm" / "sensor_limits.csv", ["product_part_number", "sensor", "unit", "warning_high", "critical_high"],
         limits(frame), counts, "plm.sensor_limits")

    # Engines enter service one a day; each was built over the two days before.
    life = frame.groupby("engine")["cycle"].max()
    installed = {e: ORIGIN + timedelta(days=i) for i, e in enumerate(engines)}
    units, as_built, prod, installs, events = [], [], [], [], []
    for e in engines:
        s, inst = serial[e], installed[e]
        started, done = inst - timedelta(days=2), inst - timedelta(days=1)
        wo = f"WO-TF1-{inst:%Y%m}"
        units.append((s, PRODUCT, "A", wo, "TF-LINE-1", _iso(started), _iso(done), "shipped", _iso(done)))
        for p, _ in MODULES:
            as_built.append((s, p, "A", 1.0, f"{p}-{s[4:]}", _iso(started + timedelta(hours=4)), 0))
        prod += [(f"PE-{s}-1", s, "ASSY-1", "final assembly", "start", _iso(started)),
                 (f"PE-{s}-2", s, "ASSY-1", "final assembly", "complete", _iso(done))]
        installs.append({"serial_number": s, "customer_id": f"OP-{1 + int(e) % 5:03d}", "site": f"Base {1 + int(e) % 5}",
                         "installed_at": _iso(inst)})
        if not live:
            at = _iso(inst + timedelta(hours=int(life[e])))
            events.append({"event_id": f"SE-{s}-FAIL", "serial_number": s, "event_type": "failure", "occurred_at": at,
                           "closed_at": at, "failed_part_number": FAILED_MODULE, "symptom_code": "HPC-DEGRADATION",
                           "removed_part_number": None, "removed_revision": None, "installed_part_number": None,
                           "installed_revision": None, "installed_component_serial": None, "eco_number": None,
                           "notes": f"Engine ran to failure after {int(life[e])} cycles"})

    db = sqlite3.connect(out / "mes" / "mes.sqlite")
    for ddl in MES_DDL.values():
        db.execute(ddl)
    db.executemany("INSERT INTO units VALUES (?,?,?,?,?,?,?,?,?)", units)
    db.executemany("INSERT INTO as_built_components VALUES (?,?,?,?,?,?,?)", as_built)
    db.executemany("INSERT INTO production_events VALUES (?,?,?,?,?,?)", prod)
    db.executemany("INSERT INTO work_instructions VALUES (?,?,?,?,?,?,?)",
                   [(f"WI-{p}", PRODUCT, "final assembly", p, "A", None, created) for p, _ in MODULES])
    db.commit()
    db.close()
    counts.update({"mes.units": len(units), "mes.as_built_components": len(as_built), "mes.production_events": len(prod)})

    # ERP: the work orders the units were built against, the item master.
    orders = sorted({u[3] for u in units})
    _csv(out / "erp" / "work_orders.csv", ["work_order_number", "product_part_number", "product_revision", "quantity",
                                           "plant", "status", "created_at", "due_date"],
         [[wo, PRODUCT, "A", sum(1 for u in units if u[3] == wo), "Plant 1", "closed", created, f"{wo[7:11]}-12-31"]
          for wo in orders], counts, "erp.work_orders")
    _csv(out / "erp" / "item_master.csv", ["part_number", "current_revision", "standard_cost", "lead_time_days",
                                           "updated_at"],
         [[p[0], "A", 250000.0 if p[0] == PRODUCT else 40000.0, 90, created] for p in parts], counts, "erp.item_master")
    _csv(out / "erp" / "purchase_orders.csv", ["po_number", "line", "part_number", "revision", "supplier_id", "quantity",
                                               "unit_price", "currency", "ordered_at", "received_at", "status"],
         [], counts, "erp.purchase_orders")
    _csv(out / "erp" / "engineering_change_log.csv", ["eco_number", "part_number", "new_revision", "applied_at"], [],
         counts, "erp.engineering_change_log")

    # Service: operators (no personal data), installations, failures, telemetry.
    _jsonl(out / "service" / "customers.jsonl",
           [{"customer_id": f"OP-{i:03d}", "name": None, "email": None, "country": "US"} for i in range(1, 6)],
           counts, "service.customers")
    _jsonl(out / "service" / "installations.jsonl", installs, counts, "service.installations")
    _jsonl(out / "service" / "service_events.jsonl", events, counts, "service.service_events")
    for name in ("warranty_claims", "service_bulletins"):
        _jsonl(out / "service" / f"{name}.jsonl", [], counts, f"service.{name}")
    counts["service.telemetry"] = _telemetry(out, frame, serial, installed)
    horizon = max(installed[e] + timedelta(hours=int(life[e])) for e in engines)
    return Summary(out, counts, _iso(horizon))


def _telemetry(out: Path, frame: pd.DataFrame, serial: dict, installed: dict) -> int:
    """One Parquet file per engine: every cycle, every sensor and setting, in long form."""
    names = SENSORS + SETTINGS
    total = 0
    for e, g in frame.groupby("engine", sort=True):
        start = np.datetime64(installed[e].replace(tzinfo=None), "us")  # UTC wall time
        ts = start + g["cycle"].to_numpy().astype("timedelta64[h]").astype("timedelta64[us]")
        n = len(g)
        table = pa.table({
            "serial_number": pa.array([serial[e]] * (n * len(names)), pa.string()),
            "ts": pa.array(np.tile(ts, len(names)), pa.timestamp("us", tz="UTC")),
            "sensor": pa.array(np.repeat(names, n), pa.string()),
            "value": pa.array(np.concatenate([g[s].to_numpy(dtype="float64") for s in names]), pa.float64()),
        })
        pq.write_table(table, out / "service" / "telemetry" / f"{serial[e]}.parquet")
        total += table.num_rows
    return total
