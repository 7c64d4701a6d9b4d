"""Ingest: from a source system's export to the raw Delta layer, through its contract.

Plain Python (no Dagster), so it can be tested and reused directly; the raw assets are thin
wrappers around `extract_entity`.

- `readers`: one reader per medium (CSV, JSON Lines, Parquet files, SQL table), one interface;
- `landing`: the one loop every export goes through (check, quarantine, land, report);
- `audit`: the boundary's records (findings, extraction log) and the raw tables' own columns;
- `recovery`: undoing what a killed extraction left behind;
- `mes`: connections to the MES database that never show its password.
"""

from .landing import ExtractionReport, extract_entity, new_batch_id
from .readers import Sources, open_reader, read_whole

__all__ = ["ExtractionReport", "Sources", "extract_entity", "new_batch_id", "open_reader", "read_whole"]
