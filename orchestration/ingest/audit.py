"""The boundary's own records in the lake: what each extraction found and how it ended.

`lake/audit/contract_findings` holds every rejected row, warning and failed export;
`lake/audit/extractions` one row per extraction attempt (what `thread status`, freshness and
`thread.contract_violations` read). The raw tables' own columns are here too: each landed row
carries its batch, extraction time, source and row in that source.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa

from contracts import KINDS, EntityContract, ExportBreach

from .. import lake

META_FIELDS = [
    pa.field("_batch_id", pa.string()),
    pa.field("_extracted_at", pa.timestamp("us", tz="UTC")),
    pa.field("_source", pa.string()),
    pa.field("_source_row", pa.int64()),
]
FINDINGS_SCHEMA = pa.schema([
    pa.field("batch_id", pa.string()),
    pa.field("extracted_at", pa.timestamp("us", tz="UTC")),
    pa.field("system", pa.string()),
    pa.field("entity", pa.string()),
    pa.field("mode", pa.string()),
    pa.field("source", pa.string()),
    pa.field("source_row", pa.int64()),
    pa.field("record_key", pa.string()),
    pa.field("column", pa.string()),
    pa.field("rule", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("severity", pa.string()),
    pa.field("is_rejected", pa.bool_()),
    pa.field("record", pa.string()),
])
EXTRACTION_SCHEMA = pa.schema([
    pa.field("batch_id", pa.string()),
    pa.field("system", pa.string()),
    pa.field("entity", pa.string()),
    pa.field("extracted_at", pa.timestamp("us", tz="UTC")),
    pa.field("status", pa.string()),  # ok | failed
    pa.field("input_rows", pa.int64()),
    pa.field("accepted_rows", pa.int64()),
    pa.field("quarantined_rows", pa.int64()),
    pa.field("is_changed", pa.bool_()),
    pa.field("message", pa.string()),
    # What the export looked like from outside when the extraction started (ingest.watch).
    pa.field("source_signature", pa.string()),
])
AUDIT_TABLES = {"contract_findings": FINDINGS_SCHEMA, "extractions": EXTRACTION_SCHEMA}


def raw_schema(c: EntityContract, extra: list[str] = ()) -> pa.Schema:
    """A raw table's columns: the contract's, any the source added (as text), then the lake's own."""
    fields = [pa.field(n, KINDS[k].arrow) for n, k in c.columns.items()]
    fields += [pa.field(n, pa.string()) for n in extra]
    return pa.schema(fields + META_FIELDS)


def masked(findings_rows: pd.DataFrame, c: EntityContract) -> pd.DataFrame:
    """Findings with the entity's personal data replaced by *** in their records: findings are read
    by whoever reads the thread; the clear record stays in the restricted quarantine only."""
    if not c.personal_data or not len(findings_rows):
        return findings_rows

    def mask(record: str | None) -> str | None:
        try:
            obj = json.loads(record) if record else None
        except ValueError:
            return "***"  # an unreadable line of a personal-data export: not shown at all
        if not isinstance(obj, dict):
            return record
        return json.dumps({k: ("***" if k in c.personal_data and v is not None else v) for k, v in obj.items()})

    return findings_rows.assign(record=findings_rows["record"].map(mask))


def log_extraction(lake_dir: Path, c: EntityContract, batch_id: str, now: datetime, status: str, *,
                   input_rows: int | None = None, accepted_rows: int | None = None,
                   quarantined_rows: int | None = None, changed: bool = False, message: str | None = None,
                   signature: str | None = None) -> None:
    row = {
        "batch_id": batch_id, "system": c.system, "entity": c.entity, "extracted_at": now, "status": status,
        "input_rows": input_rows, "accepted_rows": accepted_rows, "quarantined_rows": quarantined_rows,
        "is_changed": changed, "message": message, "source_signature": signature,
    }
    tbl = pa.table({f.name: pa.array([row[f.name]], f.type) for f in EXTRACTION_SCHEMA}, schema=EXTRACTION_SCHEMA)
    lake.append_to_log(lake.audit_table(lake_dir, "extractions"), tbl, batch_id=batch_id)


def last_extraction(lake_dir: Path, c: EntityContract) -> dict | None:
    """The entity's latest extraction log row (status, signature, ...), or None."""
    return lake.latest(lake.audit_table(lake_dir, "extractions"), {"system": c.system, "entity": c.entity},
                       "extracted_at")


def findings(rejected: pd.DataFrame, warnings: pd.DataFrame, location: str, c: EntityContract,
             batch_id: str, now: datetime) -> pa.Table:
    """Rejected rows and warnings (REJECT_COLUMNS, optionally with their own `source`) as findings."""
    parts = [df.assign(is_rejected=flag) for df, flag in ((rejected, True), (warnings, False)) if len(df)]
    if not parts:
        return FINDINGS_SCHEMA.empty_table()
    d = pd.concat(parts, ignore_index=True)
    d = d.astype(object).where(d.notna(), None)  # concat turns missing text into NaN floats
    if "source" not in d:
        d["source"] = location
    n = len(d)
    data = {
        "batch_id": [batch_id] * n, "extracted_at": [now] * n, "system": [c.system] * n,
        "entity": [c.entity] * n, "mode": [c.mode] * n,
        "source": d["source"].tolist(), "source_row": [int(x) if pd.notna(x) else None for x in d["source_row"]],
        "record_key": d["record_key"].tolist(), "column": d["column"].tolist(), "rule": d["rule"].tolist(),
        "reason": d["reason"].tolist(), "severity": d["severity"].tolist(),
        "is_rejected": d["is_rejected"].tolist(), "record": d["record"].tolist(),
    }
    return pa.table({f.name: pa.array(data[f.name], f.type) for f in FINDINGS_SCHEMA}, schema=FINDINGS_SCHEMA)


def record_breach(lake_dir: Path, c: EntityContract, breach: ExportBreach, batch_id: str, now: datetime) -> None:
    """A failed export is itself a finding (not a rejected row): it shows in thread.contract_violations."""
    df = pd.DataFrame([{
        "source_row": None, "record_key": None, "column": breach.column, "rule": "export readable",
        "reason": str(breach), "severity": "error", "record": None, "source": breach.location}])
    # Passed as a warning row so that is_rejected is false; its severity stays "error".
    tbl = findings(pd.DataFrame(), df, breach.location, c, batch_id, now)
    lake.append_to_log(lake.audit_table(lake_dir, "contract_findings"), tbl, batch_id=batch_id)
