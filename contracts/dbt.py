"""The dbt project's source definitions, generated from the contracts (one per owning system).

`python -m contracts.dbt [DBT_PROJECT_DIR]` writes `models/staging/<system>/_<system>__sources.yml`;
a test fails when the committed files differ from what the contracts generate. Freshness is dbt's
own: a table's `loaded_at_query` is its last successful extraction (from the extraction log), and
the source's limit is its contract's, so `dbt source freshness` says what `thread status` says.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from ._base import EntityContract, SystemContract

HEADER = ("# Generated from contracts/ by `python -m contracts.dbt`; do not edit by hand (a test compares).\n")


def _hours(system: SystemContract) -> int:
    return int(system.freshness_limit.total_seconds() // 3600)


def sources_doc(system: SystemContract, entities: list[EntityContract]) -> dict:
    def table(c: EntityContract) -> dict:
        return {
            "name": c.entity,
            "identifier": c.raw_relation,
            "description": c.description,
            "config": {"loaded_at_query": (
                "select max(extracted_at) from raw.audit__extractions "
                f"where system = '{c.system}' and entity = '{c.entity}' and status = 'ok'")},
        }

    return {"version": 2, "sources": [{
        "name": system.system,
        "description": (f"{system.title} ({system.owner_team}): {system.description} Raw Delta tables under "
                        f"lake/raw/{system.system}/, landed by Dagster after the {system.system} contract "
                        f"v{system.contract_version}."),
        "schema": "raw",
        "config": {"freshness": {"error_after": {"count": _hours(system), "period": "hour"}}},
        "tables": [table(c) for c in entities],
    }]}


def sources_yml(system: SystemContract, entities: list[EntityContract]) -> str:
    return HEADER + yaml.safe_dump(sources_doc(system, entities), sort_keys=False, width=100)


def path(dbt_dir: Path, system: str) -> Path:
    return Path(dbt_dir) / "models" / "staging" / system / f"_{system}__sources.yml"


def generated(dbt_dir: Path) -> dict[Path, str]:
    from . import ENTITIES, SYSTEMS

    return {path(dbt_dir, name): sources_yml(s, [e for e in ENTITIES.values() if e.system == name])
            for name, s in SYSTEMS.items()}


def write(dbt_dir: Path) -> list[Path]:
    out = []
    for p, text in generated(dbt_dir).items():
        p.write_text(text)
        out.append(p)
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "dbt_project"
    for p in write(target):
        print(f"wrote {p}")
