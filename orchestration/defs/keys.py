"""Asset keys that several definition modules refer to (one place for each)."""

import dagster as dg

import contracts

from .. import twins


def raw_key(c: contracts.EntityContract) -> dg.AssetKey:
    return dg.AssetKey([c.system, c.entity])


RAW_KEYS = [raw_key(c) for c in contracts.ENTITIES.values()]
# The boundary's audit tables, appended by extractions (lake/audit/...): the log by every one, the
# findings by those that found something.
EXTRACTION_LOG_KEY = dg.AssetKey(["audit", "extractions"])
FINDINGS_KEY = dg.AssetKey(["audit", "contract_findings"])
AUDIT_WRITTEN_BY_EXTRACTION = [EXTRACTION_LOG_KEY, FINDINGS_KEY]
# Written into the build database by the dbt step itself, before dbt runs.
AUDIT_WRITTEN_BY_DBT_STEP = [dg.AssetKey(["audit", "source_systems"]), dg.AssetKey(["audit", "pii_masks"])]
RUL_KEY = dg.AssetKey(["health", "rul_model"])
# The models the estimates read (every thread run reports them: see defs/thread.py).
RUL_INPUT_KEYS = [dg.AssetKey(["thread", "units"]), dg.AssetKey(["thread", "service_events"]),
                  dg.AssetKey(["staging", "stg_service__telemetry"])]
# The dbt views the twin steps read (models/twin_logic).
LOGIC_KEYS = [dg.AssetKey(["twin_logic", t]) for t in (*twins.TABLES, "unit_twin_inputs")]
# One partitioned asset per unit's twin; it maintains all three twin tables.
TWIN_KEY = dg.AssetKey(["twin", "unit_twin"])
TWIN_CHANGES_KEY = dg.AssetKey(["twin", "changes"])
WAREHOUSE_KEY = dg.AssetKey(["warehouse"])
