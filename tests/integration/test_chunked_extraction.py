"""Big MES tables are read in chunks: the same rows land, duplicates across chunks are still caught."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

import contracts
from orchestration import lake
from orchestration.ingest import Sources, extract_entity, mes, readers


@pytest.mark.parametrize("chunked", [False, True])
def test_chunked_and_whole_reads_land_the_same_rows(small_sources, tmp_path, monkeypatch, chunked):
    sources = tmp_path / "sources"
    shutil.copytree(small_sources, sources)
    con = sqlite3.connect(sources / "mes" / "mes.sqlite")
    # Two conflicting copies of one key, far apart in the table (different chunks), and an exact repeat.
    total = con.execute("SELECT count(*) FROM as_built_components").fetchone()[0]
    con.execute("CREATE TABLE t AS SELECT * FROM as_built_components")
    con.execute("DROP TABLE as_built_components")
    con.execute("CREATE TABLE as_built_components AS SELECT * FROM t")  # no primary key: duplicates allowed
    con.execute("DROP TABLE t")
    row = con.execute("SELECT * FROM as_built_components LIMIT 1 OFFSET 5").fetchone()
    con.execute("INSERT INTO as_built_components VALUES (?,?,?,?,?,?,?)", (*row[:2], "ZZ", *row[3:]))  # conflicting
    other = con.execute("SELECT * FROM as_built_components LIMIT 1 OFFSET 7").fetchone()
    con.execute("INSERT INTO as_built_components VALUES (?,?,?,?,?,?,?)", other)  # exact repeat
    # A quantity SQLite stores as text (its columns take any type): read, then refused by the contract.
    con.execute("INSERT INTO as_built_components VALUES (?,?,?,?,?,?,?)", (*row[:2], "ZY", "many", *row[4:]))
    con.commit()
    con.close()
    if chunked:
        monkeypatch.setattr(mes, "CHUNK_ROWS", 1000)
    c = contracts.entity("mes", "as_built_components")
    report = extract_entity(c, Sources(sources, Sources.default_mes_url(sources)), tmp_path / "lake", batch_id="b")
    assert report.input_rows == total + 3
    assert report.quarantined_rows == 4  # both conflicting copies, the repeat, the text quantity
    assert sorted(report.rejected.rule) == ["key unique", "key unique", "record unique", "type float"]
    raw = lake.read(tmp_path / "lake" / "raw" / "mes" / "as_built_components")
    assert raw.num_rows == report.accepted_rows == total - 1
    keys = set(zip(*(raw[k].to_pylist() for k in c.key)))
    assert len(keys) == raw.num_rows


@pytest.mark.parametrize("chunked", [False, True])
def test_big_json_lines_exports_are_read_in_chunks_with_the_same_result(small_sources, tmp_path, monkeypatch, chunked):
    import json

    sources = tmp_path / "sources"
    shutil.copytree(small_sources, sources)
    path = sources / "service" / "service_events.jsonl"
    lines = path.read_text().splitlines()
    total = len(lines)
    first = json.loads(lines[3])
    with path.open("a") as f:
        f.write(json.dumps({**first, "notes": "a different story"}) + "\n")  # conflicting copy of line 4
        f.write('{"event_id": "broken", \n')  # malformed
    if chunked:
        monkeypatch.setattr(readers, "JSONL_CHUNK_BYTES", 0)
        monkeypatch.setattr(readers, "JSONL_CHUNK_LINES", 50)
    c = contracts.entity("service", "service_events")
    report = extract_entity(c, Sources(sources, Sources.default_mes_url(sources)), tmp_path / "lake", batch_id="b")
    assert report.input_rows == total + 2
    assert sorted(report.rejected.rule) == ["key unique", "key unique", "valid json"]
    raw = lake.read(tmp_path / "lake" / "raw" / "service" / "service_events")
    assert raw.num_rows == report.accepted_rows == total - 1
    assert first["event_id"] not in set(raw["event_id"].to_pylist())
    # ...and the cursor is at the end: a second extraction reads nothing new.
    again = extract_entity(c, Sources(sources, Sources.default_mes_url(sources)), tmp_path / "lake", batch_id="c")
    assert again.input_rows == 0


def test_a_big_table_read_again_lands_only_when_a_value_changed(small_sources, tmp_path, monkeypatch):
    """The chunked read's fingerprint: the same rows land no new version; one changed value does."""
    sources = tmp_path / "sources"
    shutil.copytree(small_sources, sources)
    monkeypatch.setattr(mes, "CHUNK_ROWS", 1000)
    c = contracts.entity("mes", "as_built_components")
    src = Sources(sources, Sources.default_mes_url(sources))
    raw = tmp_path / "lake" / "raw" / "mes" / "as_built_components"
    assert extract_entity(c, src, tmp_path / "lake", batch_id="a").changed
    first = lake.table(raw).version()
    assert not extract_entity(c, src, tmp_path / "lake", batch_id="b").changed
    assert lake.table(raw).version() == first
    con = sqlite3.connect(sources / "mes" / "mes.sqlite")
    con.execute("UPDATE as_built_components SET quantity = quantity + 1 WHERE rowid = "
                "(SELECT max(rowid) FROM as_built_components)")
    con.commit()
    con.close()
    assert extract_entity(c, src, tmp_path / "lake", batch_id="c").changed
    assert lake.table(raw).version() > first
