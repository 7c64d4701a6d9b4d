"""Twin health learned from the thread: a remaining-useful-life model per product.

Runs after the thread (it reads units, service events and telemetry from the build database) and
before the twin change set, so new estimates reach the twins like any other change. A product is
retrained only when its failure history changed; otherwise the stored model estimates the newest
readings; when neither a model nor the readings changed (a service event that is no failure),
the stored estimates stay as they are. Each version is kept with its training range and held-out
metrics (lake/health).
"""

from datetime import datetime, timezone

import dagster as dg

from .. import fingerprints, lake, rul
from ..fingerprints import Ledger
from ..resources import WriterLock
from ..settings import ThreadSettings
from .keys import RUL_INPUT_KEYS, RUL_KEY

RUL_READS = (("service", "telemetry"), ("service", "service_events"), ("mes", "units"))
# What the estimates read besides the models (failures only pick the model).
ESTIMATES_READ = (("service", "telemetry"), ("mes", "units"))


def rul_inputs(thread: ThreadSettings, run_id: str) -> str:
    """What the models and estimates read (telemetry, failures, units), as the step compares it with
    the one it last completed with; after a failed or partial thread build, this run's own."""
    if Ledger(thread.build_db).get("thread") is None:
        return f"run:{run_id}"
    return fingerprints.digest([fingerprints.version(lake.raw_table(thread.lake_dir, s, e)) for s, e in RUL_READS])


@dg.asset(
    key=RUL_KEY,
    deps=RUL_INPUT_KEYS,
    group_name="health",
    kinds={"scikitlearn", "delta"},
    description="Remaining useful life per product, learned from units with telemetry and recorded failures "
    "(hours from each reading to the next failure, capped at 125 reading intervals), retrained when the "
    "failures change. Versions with RMSE and PHM08 score on held-out units: lake/health/rul_versions; the "
    "estimate at each unit's latest reading: lake/health/rul_estimates (twin.unit_twin.rul_hours).",
    output_required=False,
)
def rul_model(context: dg.AssetExecutionContext, thread: ThreadSettings, writer: WriterLock):
    # What the models and estimates read: telemetry, failures (service events) and units. An ECO or
    # a new PLM revision changes the thread but not these: no retraining, no new estimates.
    ledger = Ledger(thread.build_db)
    inputs = rul_inputs(thread, context.run_id)
    if ledger.unchanged("rul", inputs):
        # Reported, not recomputed: the twin change set after it must still run (the thread
        # changed even though what the estimates read did not).
        yield dg.MaterializeResult(metadata={"unchanged": True, "estimated_units": 0})
        return
    # With the dbt code: the estimates read the staging views.
    readings = fingerprints.digest([fingerprints.version(lake.raw_table(thread.lake_dir, s, e))
                                    for s, e in ESTIMATES_READ] + [str((ledger.get("thread_sources") or {}).get("code"))])
    report = rul.refresh(thread.build_db, thread.lake_dir, datetime.now(timezone.utc), context.run_id,
                         memory_limit=thread.memory_limit,
                         readings_unchanged=ledger.get("thread") is not None and ledger.unchanged("rul_readings", readings))
    versions = {}
    for row in report["trained"] + report["kept"]:
        versions[row["product_part_number"]] = {
            "version": row["version"], "retrained_now": row in report["trained"],
            "training_units": int(row["training_units"]), "held_out_units": int(row["held_out_units"]),
            "data_from": str(row["data_from"]), "data_to": str(row["data_to"]),
            "rmse_hours": None if row["rmse_hours"] is None else round(float(row["rmse_hours"]), 2),
            "phm08_score": None if row["phm08_score"] is None else round(float(row["phm08_score"]), 1),
            "train_seconds": float(row["train_seconds"]),
        }
    for row in report["trained"]:
        context.log.info(f"Trained {row['version']} on {row['training_units']} units: RMSE "
                         f"{row['rmse_hours']} h on {row['held_out_units']} held-out units")
    ledger.record("rul", inputs)
    ledger.record("rul_readings", readings)
    yield dg.MaterializeResult(metadata={
        "models": dg.MetadataValue.json(versions),
        "retrained": len(report["trained"]),
        "products_without_failures": ", ".join(report["without_failures"]) or "none",
        "estimated_units": report["estimated_units"],
        "estimates_kept": report["estimates_kept"],
    })
