"""The source systems, generated from the contracts' registry: per system, one raw asset per
entity of its export and one sensor that watches the export.

Each raw asset reads the export, enforces the pandera contract, quarantines rejected rows and
writes the rest to `lake/raw/<system>/<entity>`; a breach of the whole export fails the asset with
one message naming system, entity, file or table, and column, and nothing is written. It also
records the extraction in the boundary's audit tables (`audit/contract_findings`,
`audit/extractions`), which is where their lineage comes from.

The sensors look without reading rows: files by size and modification time (new telemetry files
by name); MES tables by row count, timestamp high-water marks and status mix.
"""


import hashlib
import json
from datetime import datetime, timezone

import dagster as dg

import contracts
from contracts import KINDS, EntityContract, ExportBreach

from .. import lake, lineage
from ..ingest import extract_entity, new_batch_id, watch
from ..resources import WriterLock
from ..settings import ThreadSettings
from . import runs
from .keys import AUDIT_WRITTEN_BY_EXTRACTION, EXTRACTION_LOG_KEY, raw_key

KIND_OF_MEDIUM = {"csv": "csv", "jsonl": "json", "parquet": "parquet", "table": "sql"}


def column_schema(c: EntityContract) -> dg.TableSchema:
    return dg.TableSchema(columns=[
        dg.TableColumn(name, KINDS[kind].dagster, description=c.column_docs.get(name),
                       constraints=dg.TableColumnConstraints(nullable=c.nullable(name), unique=c.key == (name,)))
        for name, kind in c.columns.items()
    ])


def _contract_check(c: EntityContract, report) -> dg.AssetCheckResult:
    examples = report.rejected.head(5)
    share = report.quarantined_rows / report.input_rows if report.input_rows else 0.0
    # Warning, never blocking: rejected rows are already kept out of the lake; a systematically
    # broken export (see ingest.landing.BROKEN_SHARE) fails the asset before anything is written.
    return dg.AssetCheckResult(
        check_name="contract_rows",
        passed=report.quarantined_rows == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "quarantined_rows": report.quarantined_rows,
            "warning_rows": report.warning_rows,
            "input_rows": report.input_rows,
            "rejected_share": round(share, 4),
            "examples": dg.MetadataValue.md(
                "\n".join(f"- row {r.source_row}: {r.reason}" for r in examples.itertuples()) or "none"),
        },
    )


def raw_asset(c: EntityContract) -> dg.AssetsDefinition:
    owner = contracts.SYSTEMS[c.system]
    key = raw_key(c)
    where = c.location if c.medium != "table" else f"MES table {c.location}"

    @dg.asset(
        key=key,
        group_name=c.system,
        description=(
            f"{c.description}\n\nSource: `{where}` ({c.mode}). Contract `{c.name}` v{owner.contract_version}, "
            f"owned by {owner.owner_team}. Raw Delta table: `lake/raw/{c.system}/{c.entity}`."
        ),
        kinds={"delta", KIND_OF_MEDIUM[c.medium]},
        owners=[f"team:{c.system}"],
        # Late when the last successful extraction is older than the contract's limit.
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=owner.freshness_limit),
        metadata={
            "contract": c.name,
            "contract_version": owner.contract_version,
            "owner_team": owner.owner_team,
            "key": ", ".join(c.key),
            "mode": c.mode,
            "freshness_limit_hours": owner.freshness_limit.total_seconds() / 3600,
            "dagster/column_schema": column_schema(c),
        },
        check_specs=[dg.AssetCheckSpec(
            "contract_rows", asset=key,
            description=(f"Every row of the export meets the {c.name} contract. Rejected rows are quarantined and "
                         "the rest flows; an export where most rows break it fails the asset instead."),
        )],
    )
    def _raw(context: dg.AssetExecutionContext, thread: ThreadSettings, writer: WriterLock):
        now = datetime.now(timezone.utc)
        batch = new_batch_id(c, now, context.run_id)
        # Taken before reading: a change made during the extraction is seen as a change next time.
        signature = watch.extraction_signature(c, thread.sources(), thread.lake_dir)
        raw = lineage.delta(lake.raw_table(thread.lake_dir, c.system, c.entity),
                            {n: KINDS[k].duckdb for n, k in c.columns.items()})
        with lineage.step(thread.lineage(), f"extract.{c.system}.{c.entity}", lineage.Parent(context.run_id,
                          context.job_name), inputs=[lineage.export(c, thread.sources())], outputs=[raw]) as step:
            try:
                report = extract_entity(c, thread.sources(), thread.lake_dir, batch_id=batch, now=now,
                                        guards=thread.guards(), source_signature=signature)
            except ExportBreach as breach:
                _audited(context, c, batch, "failed", findings=True)
                raise dg.Failure(
                    description=str(breach),
                    metadata={"system": c.system, "entity": c.entity, "location": breach.location,
                              "column": breach.column or "", "batch_id": batch},
                    allow_retries=False,
                ) from breach
            step.rows[raw] = report.accepted_rows
            if report.quarantined_rows:
                step.outputs.append(lineage.delta(lake.quarantine_table(thread.lake_dir, c.system, c.entity)))
        _audited(context, c, batch, "ok", findings=bool(report.quarantined_rows or report.warning_rows))
        return dg.MaterializeResult(metadata=report.metadata(), check_results=[_contract_check(c, report)])

    return _raw


def _audited(context: dg.AssetExecutionContext, c: EntityContract, batch: str, status: str, *,
             findings: bool) -> None:
    """The extraction appended to the audit tables: say so, so their lineage and freshness are true.
    Every extraction appends to the extraction log; only rejected rows, warnings or a breach to
    the findings."""
    for key in AUDIT_WRITTEN_BY_EXTRACTION if findings else [EXTRACTION_LOG_KEY]:
        context.log_event(dg.AssetMaterialization(
            asset_key=key, metadata={"batch_id": batch, "entity": c.name, "status": status}))


# -- sensors ------------------------------------------------------------------------------------

def source_sensor(system: str, then: list[dg.AssetKey] = (), tags: dict | None = None) -> dg.SensorDefinition:
    """The sensor of one system's exports; its runs extract what changed, then materialize `then`
    (what follows every landing: the thread), tagged `tags`."""
    entities = [c for c in contracts.ENTITIES.values() if c.system == system]
    keys = [raw_key(c) for c in entities]
    on_database = entities[0].medium == "table"

    @dg.sensor(
        name=f"{system}_exports",
        asset_selection=dg.AssetSelection.assets(*keys, *then),
        minimum_interval_seconds=runs.SENSOR_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Watches the {contracts.SYSTEMS[system].title} {'database' if on_database else 'export files'} "
                    "and extracts only the entities that changed.",
    )
    def _sensor(context: dg.SensorEvaluationContext, thread: ThreadSettings):
        cursor = json.loads(context.cursor) if context.cursor else None
        stamp = watch.database_stamp(entities, thread.sources())
        if stamp is not None and cursor is not None and cursor.get(watch.CURSOR_STAMP) == stamp:
            return dg.SkipReason(f"no change in {system} (its database file is as it was)")
        now = watch.signatures(entities, thread.sources())
        # First look (a new `thread serve`): compare with what the lake last extracted, so a change
        # written while nothing was watching is extracted now, not at the next daily refresh.
        before = cursor or watch.last_extracted(thread.lake_dir, system)
        changed = [c for c in entities if before.get(c.entity) != now[c.entity]]
        context.update_cursor(json.dumps({**now, **({watch.CURSOR_STAMP: stamp} if stamp else {})}, sort_keys=True))
        if not changed:
            return dg.SkipReason(f"no change in {system}")
        run_key = hashlib.sha1(json.dumps([now[c.entity] for c in changed]).encode()).hexdigest()[:16]
        return dg.RunRequest(
            run_key=f"{system}:{run_key}",
            asset_selection=[raw_key(c) for c in changed] + list(then),
            tags={"thread/trigger": f"{system}_exports", "thread/entities": ",".join(c.entity for c in changed),
                  **(tags or {})},
        )

    return _sensor


RAW_ASSETS = [raw_asset(c) for c in contracts.ENTITIES.values()]
