"""Live twins: one Dagster partition per unit, refreshed only where the unit's inputs changed.

`twin/changes` (after the dbt thread) compares each unit's twin inputs with those its twin was
computed from and records the change set. The twin-refresh sensor turns it into runs of the
partitioned twin assets for just those units (a run covers a partition range; the asset
recomputes only the changed units inside it). A full rebuild of all twins is one run
(single-run backfill policy).
"""

from datetime import datetime, timezone

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from .. import lake, twins
from ..resources import LakeLock, ThreadSettings
from .health import RUL_KEY
from .keys import TWIN_KEY, TWIN_KEYS, WAREHOUSE_KEY

UNITS = dg.DynamicPartitionsDefinition(name="units")
LOGIC_KEYS = [dg.AssetKey(["twin_logic", t]) for t in (*twins.TABLES, "unit_twin_inputs")]
CHANGES_KEY = dg.AssetKey(["twin", "changes"])
FULL_REFRESH_TAG = "thread/full_refresh"


def register_units(context: dg.AssetExecutionContext, serials: list[str], units_per_partition: int = 1) -> int:
    """Add a twin partition for every unit (or shard of units) not seen before; how many were added."""
    known = set(context.instance.get_dynamic_partitions(UNITS.name))
    new = sorted({twins.partition_key(s, units_per_partition) for s in serials} - known)
    if new:
        context.instance.add_dynamic_partitions(UNITS.name, new)
    return len(new)


@dg.asset(
    key=CHANGES_KEY,
    deps=[*LOGIC_KEYS, RUL_KEY],
    group_name="twin",
    kinds={"duckdb", "delta"},
    description="Which twins must be refreshed and why: each unit's twin inputs (unit_twin_inputs) "
    "against those its twin was last computed from. Written to lake/twin/_pending.",
)
def twin_changes(context: dg.AssetExecutionContext, thread: ThreadSettings, writer: LakeLock) -> dg.MaterializeResult:
    changed = twins.changes(thread.build_db, thread.lake_dir)
    now = datetime.now(timezone.utc)
    changed = changed.append_column("detected_at", pa.array([now] * changed.num_rows, pa.timestamp("us", tz="UTC")))
    lake.write(thread.lake_dir / "twin" / "_pending", changed, "overwrite", batch_id=context.run_id)
    new_units = [r["serial_number"] for r in changed.to_pylist() if r["reasons"] == ["new unit"]]
    added = register_units(context, new_units, thread.twin_units_per_partition)
    by_reason: dict[str, int] = {}
    for reasons in changed.column("reasons").to_pylist():
        for r in reasons:
            by_reason[r] = by_reason.get(r, 0) + 1
    return dg.MaterializeResult(metadata={
        "units_to_refresh": changed.num_rows,
        "partitions_added": added,
        "by_reason": dg.MetadataValue.json(by_reason),
        "examples": dg.MetadataValue.json(changed.slice(0, 20).select(["serial_number", "reasons"]).to_pylist()),
    })


@dg.asset(
    key=TWIN_KEY,
    deps=[*LOGIC_KEYS, RUL_KEY, CHANGES_KEY],
    group_name="twin",
    kinds={"delta"},
    partitions_def=UNITS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description=(
        "One live twin per unit (a partition per serial number, units not scrapped): its row of "
        "twin.unit_twin, what it holds (twin.unit_components) and its sensors (twin.unit_sensor_state), "
        "kept in lake/twin/_state and published by `warehouse`. A run recomputes only the units in its "
        "partition range whose inputs changed; which ones and why is in lake/twin/_refresh_log."
    ),
)
def twin_units(context: dg.AssetExecutionContext, thread: ThreadSettings, writer: LakeLock) -> dg.MaterializeResult:
    keys = set(context.partition_keys)
    size = thread.twin_units_per_partition
    full = context.run.tags.get(FULL_REFRESH_TAG) == "true"
    pending = twins.pending(thread.lake_dir)
    reasons = {}
    if pending is not None:
        for row in pending.select(["serial_number", "reasons"]).to_pylist():
            reasons[row["serial_number"]] = row["reasons"]
    # A range can include units whose inputs did not change: recompute only those that did.
    if full and size == 1:
        targets = sorted(keys)
    else:
        candidates = (twins.units(thread.build_db) | set(reasons)) if full else set(reasons)
        targets = sorted(s for s in candidates if twins.partition_key(s, size) in keys)
    now = datetime.now(timezone.utc)
    counts = twins.refresh(thread.build_db, thread.lake_dir, targets, batch_id=context.run_id, now=now)
    why = {k: reasons.get(k, ["full refresh"]) for k in targets}
    twins.log_refresh(thread.lake_dir, context.run_id, why, now)
    by_reason: dict[str, int] = {}
    for rs in why.values():
        for r in rs:
            by_reason[r] = by_reason.get(r, 0) + 1
    context.log.info(f"Refreshed {len(targets)} of {len(keys)} twins in the range: {by_reason}")
    # Kept small: in a run over many partitions this is stored once per partition.
    return dg.MaterializeResult(metadata={
        "refreshed_units": len(targets),
        "units_in_run": len(keys),
        "refreshed_by_reason": dg.MetadataValue.json(by_reason),
        "component_rows": counts["unit_components"],
    })


@dg.sensor(
    name="twin_refresh",
    asset_selection=dg.AssetSelection.assets(*TWIN_KEYS, WAREHOUSE_KEY),
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests twin runs for the units in the current change set (lake/twin/_pending) "
    "that have not been refreshed yet, as few partition ranges as possible.",
)
def twin_refresh_sensor(context: dg.SensorEvaluationContext, thread: ThreadSettings):
    pending = twins.pending(thread.lake_dir)
    if pending is None or pending.num_rows == 0:
        return dg.SkipReason("every twin is up to date")
    detected = pc.max(pending["detected_at"]).as_py().isoformat()
    keys = list(context.instance.get_dynamic_partitions(UNITS.name))
    size = thread.twin_units_per_partition
    wanted = {twins.partition_key(s, size) for s in pending["serial_number"].to_pylist()}
    new = sorted(wanted - set(keys))
    ranges = twins.partition_ranges(keys + new, wanted)
    requests = [
        dg.RunRequest(
            run_key=f"twins:{detected}:{start}:{end}",
            # Publishing in the same run saves a launch: the refreshed twins reach analysts at once.
            asset_selection=[*TWIN_KEYS, WAREHOUSE_KEY],
            tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end,
                  "thread/trigger": "twin_refresh"},
        )
        for start, end in ranges
    ]
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[UNITS.build_add_request(new)] if new else [],
    )
