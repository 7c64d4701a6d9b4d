"""The boundary audit: what every extraction accepted, quarantined or failed.

dbt's `audit` sources (contract findings, extraction log, source systems, PII masks) are these
assets, downstream of every raw asset, so the thread waits for the whole boundary.
"""

import dagster as dg
import pyarrow.compute as pc

import contracts

from .. import lake
from ..resources import ThreadSettings

RAW_KEYS = [dg.AssetKey([c.system, c.entity]) for c in contracts.ENTITIES.values()]
AUDIT_SPECS = [
    dg.AssetSpec(["audit", "contract_findings"], deps=RAW_KEYS, group_name="audit", kinds={"delta"},
                 description="Every contract finding at extraction: rejected rows, warnings, failed exports "
                 "(lake/audit/contract_findings)."),
    dg.AssetSpec(["audit", "extractions"], deps=RAW_KEYS, group_name="audit", kinds={"delta"},
                 description="One row per extraction attempt of one entity (lake/audit/extractions)."),
    dg.AssetSpec(["audit", "source_systems"], group_name="audit", kinds={"python"},
                 description="Owner, contract version and freshness limit of each source system, "
                 "from the contracts package."),
    dg.AssetSpec(["audit", "pii_masks"], deps=[dg.AssetKey(["service", "customers"])], group_name="audit",
                 kinds={"duckdb"},
                 description="Salted hashes of customers' names and emails (salt from THREAD_PII_SALT, bound as a "
                 "parameter, never stored); only in the private build database."),
]


@dg.multi_asset(specs=AUDIT_SPECS, name="audit", can_subset=True)
def audit(context: dg.AssetExecutionContext, thread: ThreadSettings):
    # Subsettable: a refresh after an extraction touches the findings and the log only; source
    # systems change with a deployment, and re-materializing them would re-run their
    # whole downstream for nothing.
    selected = context.selected_asset_keys
    log = lake.read(thread.lake_dir / "audit" / "extractions")
    rows = []
    if log is not None and log.num_rows:
        df = log.to_pandas().sort_values("extracted_at").groupby(["system", "entity"]).tail(1)
        rows = df.to_dict("records")
    table = "| system | entity | last extraction | status | accepted | quarantined |\n|---|---|---|---|---|---|\n"
    table += "\n".join(
        f"| {r['system']} | {r['entity']} | {r['extracted_at']:%Y-%m-%d %H:%M} | {r['status']} | "
        f"{'' if r['accepted_rows'] != r['accepted_rows'] or r['accepted_rows'] is None else int(r['accepted_rows'])} | "
        f"{'' if r['quarantined_rows'] != r['quarantined_rows'] or r['quarantined_rows'] is None else int(r['quarantined_rows'])} |"
        for r in rows
    )
    findings = lake.read(thread.lake_dir / "audit" / "contract_findings", columns=["is_rejected"])
    rejected = int(pc.sum(findings["is_rejected"]).as_py() or 0) if findings is not None and findings.num_rows else 0
    results = {
        dg.AssetKey(["audit", "contract_findings"]): {"rejected_rows_all_time": rejected},
        dg.AssetKey(["audit", "extractions"]): {
            "entities": len(rows),
            "failed_entities": sum(1 for r in rows if r["status"] == "failed"),
            "last_extractions": dg.MetadataValue.md(table),
        },
        dg.AssetKey(["audit", "source_systems"]): {
            s.system: f"{s.owner_team}, v{s.contract_version}, fresh within {s.freshness_limit}"
            for s in contracts.SYSTEMS.values()
        },
        dg.AssetKey(["audit", "pii_masks"]): {},
    }
    for key, metadata in results.items():
        if key in selected:
            yield dg.MaterializeResult(asset_key=key, metadata=metadata)
