"""The raw layer: one asset per entity of a system's export, built from its contract.

Each asset reads the export, enforces the pandera contract, quarantines rejected rows and writes
the rest to `lake/raw/<system>/<entity>`. A breach of the whole export fails the asset with one
message naming system, entity, file or table, and column; nothing is written.
"""


from datetime import datetime, timezone

import dagster as dg

import contracts
from contracts import EntityContract, ExportBreach

from ..extract import extract_entity, new_batch_id
from ..resources import LakeLock, ThreadSettings

KIND_OF_MEDIUM = {"csv": "csv", "jsonl": "json", "parquet": "parquet", "table": "sql"}
DAGSTER_TYPES = {"str": "string", "int": "integer", "float": "float", "timestamp": "timestamp", "date": "date"}


def column_schema(c: EntityContract) -> dg.TableSchema:
    return dg.TableSchema(columns=[
        dg.TableColumn(name, DAGSTER_TYPES[kind], description=c.column_docs.get(name),
                       constraints=dg.TableColumnConstraints(nullable=c.nullable(name), unique=c.key == (name,)))
        for name, kind in c.columns.items()
    ])


def raw_asset(c: EntityContract, after=None) -> dg.AssetsDefinition:
    """`after(context, thread, report)` runs once the entity has landed (e.g. register new units)."""
    owner = contracts.SYSTEMS[c.system]
    key = dg.AssetKey([c.system, c.entity])
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
        check_specs=[
            dg.AssetCheckSpec(
                "contract_rows",
                asset=key,
                description=(
                    f"Every row of the export meets the {c.name} contract. Rejected rows are quarantined and "
                    "the rest flows; an export where most rows break it fails the asset instead."
                ),
            )
        ],
    )
    def _raw(context: dg.AssetExecutionContext, thread: ThreadSettings, writer: LakeLock):
        now = datetime.now(timezone.utc)
        batch = new_batch_id(c, now, context.run_id)
        try:
            report = extract_entity(c, thread.sources(), thread.lake_dir, batch_id=batch, now=now)
        except ExportBreach as breach:
            raise dg.Failure(
                description=str(breach),
                metadata={"system": c.system, "entity": c.entity, "location": breach.location,
                          "column": breach.column or "", "batch_id": batch},
                allow_retries=False,
            ) from breach
        extra = after(context, thread, report) if after else {}
        examples = report.rejected.head(5)
        share = report.quarantined_rows / report.input_rows if report.input_rows else 0.0
        # Warning, never blocking: rejected rows are already kept out of the lake; a systematically
        # broken export (see extract.BROKEN_SHARE) fails the asset before anything is written.
        return dg.MaterializeResult(
            metadata={**report.metadata(), **(extra or {})},
            check_results=[
                dg.AssetCheckResult(
                    check_name="contract_rows",
                    passed=report.quarantined_rows == 0,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "quarantined_rows": report.quarantined_rows,
                        "warning_rows": report.warning_rows,
                        "input_rows": report.input_rows,
                        "rejected_share": round(share, 4),
                        "examples": dg.MetadataValue.md(
                            "\n".join(f"- row {r.source_row}: {r.reason}" for r in examples.itertuples())
                            or "none"
                        ),
                    },
                )
            ],
        )

    return _raw


def raw_assets(system: str, after: dict | None = None) -> list[dg.AssetsDefinition]:
    after = after or {}
    return [raw_asset(c, after.get(c.entity)) for c in contracts.ENTITIES.values() if c.system == system]
