"""Export the contracts as Open Data Contract Standard (ODCS v3.2.0) documents, one per system.

Generated from the same pandera models and ownership metadata the pipeline enforces, so the
published contract cannot drift from the enforced one.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ._base import EntityContract, SystemContract
from ._types import KINDS

API_VERSION = "v3.2.0"
PHYSICAL = {
    "csv": {"str": "text", "int": "text (integer)", "float": "text (decimal)", "timestamp": "text (ISO 8601 UTC)",
            "date": "text (YYYY-MM-DD)"},
    "jsonl": {"str": "string", "int": "number", "float": "number", "timestamp": "string (ISO 8601 UTC)",
              "date": "string (YYYY-MM-DD)"},
    "table": {"str": "TEXT", "int": "INTEGER", "float": "REAL", "timestamp": "TEXT (ISO 8601 UTC)", "date": "TEXT"},
    "parquet": {"str": "string", "int": "int64", "float": "double", "timestamp": "timestamp[us, tz=UTC]",
                "date": "date32"},
}
# pandera's column checks as ODCS logical type options, which datacontract-cli executes.
TYPE_OPTIONS = {
    "greater_than": lambda s: {"exclusiveMinimum": s["min_value"]},
    "greater_than_or_equal_to": lambda s: {"minimum": s["min_value"]},
    "less_than": lambda s: {"exclusiveMaximum": s["max_value"]},
    "less_than_or_equal_to": lambda s: {"maximum": s["max_value"]},
    "str_matches": lambda s: {"pattern": s["pattern"]},
}


def _property(c: EntityContract, name: str, kind: str, column) -> dict:
    # Types and rules are the landed table's (the servers below); the export's own type is kept
    # as a custom property for whoever writes the export.
    prop = {
        "name": name,
        "logicalType": KINDS[kind].odcs,
        "physicalType": KINDS[kind].duckdb,
        "required": not column.nullable,
    }
    if name in c.key:
        prop["primaryKey"] = True
        prop["primaryKeyPosition"] = c.key.index(name) + 1
        if len(c.key) == 1:
            prop["unique"] = True
    if c.column_docs.get(name):
        prop["description"] = c.column_docs[name]
    if name in c.personal_data:
        prop["classification"] = "restricted"
        prop["description"] = (prop.get("description", "") + " Personal data: masked before analysts see it.").strip()
    quality, options = [], {}
    for chk in column.checks:
        if chk.name == "isin":
            values = list(chk.statistics["allowed_values"])
            quality.append({"type": "library", "metric": "invalidValues", "arguments": {"validValues": values},
                            "mustBe": 0, "name": "allowed_values", "dimension": "conformity", "severity": "error",
                            "description": f"{name} is one of {', '.join(map(str, values))}"})
        elif chk.name in TYPE_OPTIONS:
            options |= TYPE_OPTIONS[chk.name](chk.statistics)
    if options:
        prop["logicalTypeOptions"] = options
    if kind == "timestamp":
        quality.append({"type": "text", "name": "utc_timestamp", "dimension": "conformity", "severity": "warning",
                        "description": f"{name} is ISO 8601 in UTC in the export; a value without a time zone is "
                                       "read as UTC and reported as a warning"})
    if quality:
        prop["quality"] = quality
    prop["customProperties"] = [{"property": "exportType", "value": PHYSICAL[c.medium][kind]}]
    return prop


def _schema_object(c: EntityContract) -> dict:
    schema = c.model.to_schema()
    return {
        "name": c.entity,
        "physicalName": c.raw_relation,
        "physicalType": "table",
        "logicalType": "object",
        "description": c.description,
        "properties": [_property(c, n, k, schema.columns[n]) for n, k in c.columns.items()],
        "quality": [
            {"type": "library", "metric": "duplicateValues", "arguments": {"properties": list(c.key)}, "mustBe": 0,
             "name": "key_unique", "dimension": "uniqueness", "severity": "error",
             "description": f"({', '.join(c.key)}) identifies one record; conflicting records are quarantined"},
        ] + [
            # A rule pandera runs in Python, here as the SQL count of the rows that break it.
            {"type": "sql", "name": chk.name, "dimension": "consistency", "severity": "error",
             "description": chk.description or chk.name, "mustBe": 0,
             "query": f"SELECT count(*) FROM ${{model}} WHERE {' '.join(getattr(c.model, chk.name).violation.split())}"}
            for chk in schema.checks
        ],
        "customProperties": [
            {"property": "extractionMode", "value": c.mode},
            {"property": "exportMedium", "value": c.medium},
            {"property": "exportLocation", "value": c.location},
        ],
    }


def lake_server(catalog: Path) -> dict:
    return {"server": "lake", "type": "duckdb", "environment": "production", "database": str(catalog),
            "schema": "raw",
            "description": "What landed in the lake, as the last build read it: the lake catalog's views over each "
                           "raw Delta table's current version (rows that broke the contract are in quarantine, "
                           "not here). Refreshed by every build."}


def to_odcs(system: SystemContract, entities: list[EntityContract], catalog: Path | None = None) -> dict:
    hours = system.freshness_limit.total_seconds() / 3600
    return {
        "apiVersion": API_VERSION,
        "kind": "DataContract",
        "id": f"digital-thread-{system.system}",
        "name": f"{system.title} export for the digital thread",
        "version": system.contract_version,
        "status": "active",
        "domain": "manufacturing",
        "dataProduct": "digital-thread",
        "tenant": "digital-thread",
        "description": {
            "purpose": system.description,
            "usage": "Read by the digital thread's extraction; rows that break the contract are quarantined.",
            "limitations": "Unlisted columns may be present and are carried, never a reason to fail.",
        },
        "team": {
            "name": system.owner_team,
            "members": [{"username": system.contact, "role": "owner"}],
        },
        "slaProperties": [
            {"property": "latency", "value": hours, "unit": "h",
             "description": f"The last successful extraction is at most {hours:g} hours old; "
                            "after that everything fed by this system is marked stale."},
        ],
        **({"servers": [lake_server(catalog)]} if catalog else {}),
        "schema": [_schema_object(c) for c in entities],
        "customProperties": [
            {"property": "owningSystem", "value": system.system},
            {"property": "systemOfRecordFor", "value": list(system.system_of_record_for)},
        ],
    }


def export(out: Path, systems: dict[str, SystemContract], entities, catalog: Path | None = None) -> list[Path]:
    """One ODCS file per system; with `catalog` (the lake catalog's path), a `lake` server that
    `datacontract test` runs every rule against."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, system in systems.items():
        doc = to_odcs(system, [e for e in entities.values() if e.system == name], catalog)
        path = out / f"{name}.odcs.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        written.append(path)
    return written
