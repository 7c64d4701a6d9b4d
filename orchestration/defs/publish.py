"""Publishing: the analysts' warehouse.duckdb, swapped in atomically, plus Delta copies."""


import json

import dagster as dg
import duckdb

from ..dbt_project import MANIFEST
from .. import report
from ..resources import LakeLock, ThreadSettings
from ..warehouse import publish
from .keys import TWIN_KEYS, WAREHOUSE_KEY
from .thread import published_keys



TWIN_EXTRA_COLUMNS = {
    "refreshed_at": "When this twin was last computed (its partition's last materialization).",
    "is_stale": "True when a source system feeding the twin is past its freshness limit or its last extraction "
                "failed, or data about the unit changed after refreshed_at and the twin has not been refreshed yet.",
    "rul_hours": "Remaining useful life in hours at the unit's latest telemetry reading, from its product's model "
                 "learned on the thread's failures (health/rul_model); null where no model applies.",
    "rul_model_version": "The model version that made rul_hours (`<product>/v<n>`, see lake/health/rul_versions).",
    "stale_reason": "Why the twin is stale: the late source systems and/or the aspects waiting for a refresh.",
}


def descriptions() -> dict[str, dict[str, str]]:
    """Model and column descriptions from the dbt manifest, to become table comments."""
    manifest = json.loads(MANIFEST.read_text())
    out = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model" and node["schema"] in ("thread", "twin_logic"):
            cols = {name: c.get("description", "") for name, c in node.get("columns", {}).items() if c.get("description")}
            if node.get("description"):
                cols[""] = node["description"]
            schema = "twin" if node["schema"] == "twin_logic" else node["schema"]
            if node["name"] == "unit_twin" and schema == "twin":
                cols.update(TWIN_EXTRA_COLUMNS)
                cols[""] = "One live model per unit that is not scrapped: what it is, what it holds, what it needs and how it is doing."
            out[f"{schema}.{node['name']}"] = cols
    return out


@dg.asset(
    key=WAREHOUSE_KEY,
    group_name="publish",
    deps=[*published_keys(), *TWIN_KEYS],
    kinds={"duckdb", "delta"},
    description="The analyst warehouse (`$THREAD_DATA_DIR/warehouse.duckdb`, schemas `thread` and `twin`), "
    "built beside the old one and renamed into place; every table also as Delta under lake/thread, lake/twin.",
)
def warehouse(thread: ThreadSettings, writer: LakeLock) -> dg.MaterializeResult:
    result = publish(thread.build_db, thread.warehouse, thread.lake_dir, descriptions())
    con = duckdb.connect(str(thread.warehouse), read_only=True)
    try:
        figures = report.figures(con)
        chart = report.chart_health_over_time(con)
    finally:
        con.close()
    return dg.MaterializeResult(metadata={
        "path": str(thread.warehouse),
        "seconds": result["seconds"],
        **{name: dg.MetadataValue.int(int(n)) for name, n in figures.items()},
        "fleet_health": dg.MetadataValue.md(f"![Fleet health over time](data:image/png;base64,{chart})"),
        **{f"rows {name}": n for name, n in result["tables"].items()},
    })
