"""Publishing: the analysts' warehouse.duckdb, swapped in atomically, plus Delta copies."""


import json

import dagster as dg

from ..dbt_project import MANIFEST
from ..resources import ThreadSettings
from ..warehouse import publish
from .thread import published_keys

WAREHOUSE_KEY = dg.AssetKey(["warehouse"])


def descriptions() -> dict[str, dict[str, str]]:
    """Model and column descriptions from the dbt manifest, to become table comments."""
    manifest = json.loads(MANIFEST.read_text())
    out = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model" and node["schema"] in ("thread", "twin"):
            cols = {name: c.get("description", "") for name, c in node.get("columns", {}).items() if c.get("description")}
            if node.get("description"):
                cols[""] = node["description"]
            out[f"{node['schema']}.{node['name']}"] = cols
    return out


@dg.asset(
    key=WAREHOUSE_KEY,
    group_name="publish",
    deps=published_keys(),
    kinds={"duckdb", "delta"},
    pool="build_db",
    description="The analyst warehouse (`$THREAD_DATA_DIR/warehouse.duckdb`, schemas `thread` and `twin`), "
    "built beside the old one and renamed into place; every table also as Delta under lake/thread, lake/twin.",
)
def warehouse(thread: ThreadSettings) -> dg.MaterializeResult:
    result = publish(thread.build_db, thread.warehouse, thread.lake_dir, descriptions())
    return dg.MaterializeResult(metadata={
        "path": str(thread.warehouse),
        "seconds": result["seconds"],
        **{f"rows {name}": n for name, n in result["tables"].items()},
    })
