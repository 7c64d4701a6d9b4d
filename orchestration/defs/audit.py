"""The boundary's audit tables, as the dbt project's `audit` sources see them.

None of them has a step of its own; each is written where it says, and that step records it:
the extraction log by every extraction, the findings by those that found something (`defs/sources.py`), the source
systems' contracts and the customers' masks by the dbt step while it prepares the build
database (`defs/thread.py`).
"""

import dagster as dg

from .keys import AUDIT_WRITTEN_BY_DBT_STEP, EXTRACTION_LOG_KEY, FINDINGS_KEY, RAW_KEYS

extractions, findings = EXTRACTION_LOG_KEY, FINDINGS_KEY
source_systems, pii_masks = AUDIT_WRITTEN_BY_DBT_STEP

AUDIT_SPECS = [
    dg.AssetSpec(findings, deps=RAW_KEYS, group_name="audit", kinds={"delta"},
                 description="Every contract finding at extraction: rejected rows, warnings, failed exports "
                 "(lake/audit/contract_findings). Appended by each extraction."),
    dg.AssetSpec(extractions, deps=RAW_KEYS, group_name="audit", kinds={"delta"},
                 description="One row per extraction attempt of one entity (lake/audit/extractions). Appended by "
                 "each extraction."),
    dg.AssetSpec(source_systems, group_name="audit", kinds={"duckdb"},
                 description="Owner, contract version and freshness limit of each source system, from the "
                 "contracts package; written into the build database by the dbt step before dbt runs."),
    dg.AssetSpec(pii_masks, deps=[dg.AssetKey(["service", "customers"])], group_name="audit", kinds={"duckdb"},
                 description="Salted hashes of customers' names and emails (salt from THREAD_PII_SALT, bound as a "
                 "parameter, never stored); only in the private build database, written by the dbt step "
                 "before dbt runs."),
]
