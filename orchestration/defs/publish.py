"""Publishing: the analysts' warehouse.duckdb, swapped in atomically, plus Delta copies."""

import dagster as dg
import duckdb

from .. import dbt_project, lake, lineage, publish, report, shards, twins
from ..fingerprints import BuildState, Ledger
from ..resources import WriterLock
from ..settings import ThreadSettings
from .keys import TWIN_KEY, WAREHOUSE_KEY
from .thread import published_keys
from .twins import COMPONENTS_PUBLISH

# The metadata entry of the fleet-health chart on each warehouse materialization.
CHART = "fleet_health"


@dg.asset(
    key=WAREHOUSE_KEY,
    group_name="publish",
    deps=[*published_keys(), TWIN_KEY],
    kinds={"duckdb", "delta"},
    description="The analyst warehouse (`$THREAD_DATA_DIR/warehouse.duckdb`, schemas `thread` and `twin`), "
    "built beside the old one and renamed into place; every table also as Delta under lake/thread, lake/twin.",
    output_required=False,
)
def warehouse(context: dg.AssetExecutionContext, thread: ThreadSettings, writer: WriterLock):
    ledger = Ledger(thread.build_db)
    silence = thread.telemetry_silence
    inputs, current = publish.current(thread, ledger.generation(context.run_id))
    if current:
        context.log.info("The thread, the twins and their staleness are as last published: nothing to do.")
        return
    store = shards.Store(thread.build_db)
    unpublished = store.pending_publish("shards")
    twin_units = store.pending_publish("twins")
    changes = publish.Changes(shards=unpublished, twin_units=twin_units,
                              twin_table_units={"unit_components": store.pending_publish(COMPONENTS_PUBLISH,
                                                                                         missing=twin_units)},
                              digests=store.published_digests(), ecos=store.pending_publish("ecos"),
                              aspect_shards={a: store.pending_publish(f"shards:{a}", missing=unpublished)
                                             for a in dbt_project.shard_families()})
    with lineage.step(thread.lineage(), "publish.warehouse", lineage.Parent(context.run_id, context.job_name),
                      inputs=[lineage.delta(twins.state_dir(thread.lake_dir) / t) for t in twins.TABLES]) as step:
        result = publish.publish(thread.build_db, thread.warehouse, thread.lake_dir, publish.descriptions(),
                                 memory_limit=thread.memory_limit, changes=changes, silence=silence)
        # What was published names the thread tables it was read from (no second look at the build).
        for name, rows in result["tables"].items():
            schema, table = name.split(".", 1)
            if schema == "thread":
                step.inputs.append(lineage.duckdb(thread.build_db, name))
            for out in (lineage.duckdb(thread.warehouse, name),
                        lineage.delta(lake.published_table(thread.lake_dir, schema, table))):
                step.outputs.append(out)
                step.rows[out] = int(rows)
    store.published(result["digests"])
    # Drawing the chart costs about 0.5 s (and its import as much again in a new run process): it is
    # drawn once per state of the table it shows, whatever Dagster instance the run reports to.
    drawn = DrawnChart(thread.build_db)
    digest = result["digests"].get(report.HEALTH_OVER_TIME_TABLE)
    chart = drawn.get(digest)
    con = duckdb.connect(str(thread.warehouse), read_only=True)
    try:
        figures = report.figures(con)
        if chart is None:
            chart = f"![Fleet health over time](data:image/png;base64,{report.chart_health_over_time(con).png})"
            drawn.put(digest, chart)
    finally:
        con.close()
    ledger.record("publish", inputs)
    yield dg.MaterializeResult(metadata={
        "path": str(thread.warehouse),
        "seconds": result["seconds"],
        **{name: dg.MetadataValue.int(int(n)) for name, n in figures.items()},
        CHART: dg.MetadataValue.md(chart),
        **{f"rows {name}": n for name, n in result["tables"].items()},
        "written": dg.MetadataValue.json(result["written"]),
    })


class DrawnChart(BuildState):
    """The fleet-health chart last drawn (Markdown with the PNG inline), and the digest of the
    published table it was drawn from (build/fleet_health_chart.json)."""

    def __init__(self, build_db):
        super().__init__(build_db, "fleet_health_chart.json")

    def get(self, digest: str | None) -> str | None:
        data = self._read()
        return data["markdown"] if digest and data.get("digest") == digest else None

    def put(self, digest: str | None, markdown: str) -> None:
        self._write({"digest": digest, "markdown": markdown})
