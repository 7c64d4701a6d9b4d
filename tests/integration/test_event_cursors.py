"""Event exports are read incrementally, and nothing that arrives is ever skipped or read twice:
late, out-of-order and future-dated MES events; a JSON Lines export rewritten or with a line
inserted before the cursor; a last line without its newline; snapshots changing while read."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

import contracts
from contracts import ExportBreach
from orchestration import lake
from orchestration.ingest import Sources, extract_entity

EVENTS = contracts.entity("mes", "production_events")
SERVICE = contracts.entity("service", "service_events")


@pytest.fixture
def world(small_sources, tmp_path):
    sources = tmp_path / "sources"
    shutil.copytree(small_sources, sources)
    return sources, tmp_path / "lake"


def extract(c, sources: Path, lake_dir: Path, batch: str, **kw):
    return extract_entity(c, Sources(sources, Sources.default_mes_url(sources)), lake_dir, batch_id=batch, **kw)


def keys(lake_dir: Path, c) -> list:
    t = lake.read(lake.raw_table(lake_dir, c.system, c.entity), columns=list(c.key))
    return sorted(t.column(0).to_pylist())


def insert_event(sources: Path, event_id: str, occurred_at: str) -> None:
    con = sqlite3.connect(sources / "mes" / "mes.sqlite")
    serial = con.execute("SELECT serial_number FROM units LIMIT 1").fetchone()[0]
    con.execute("INSERT INTO production_events (event_id, serial_number, station, operation, event_type, occurred_at)"
                " VALUES (?, ?, 'ST-10', 'assembly', 'complete', ?)", (event_id, serial, occurred_at))
    con.commit()
    con.close()


def test_late_out_of_order_and_future_mes_events_all_land_once(world, tmp_path):
    sources, lake_dir = world
    extract(EVENTS, sources, lake_dir, "b1")
    # One event dated far in the future (it used to stop every later one), then one months late,
    # then an ordinary one.
    insert_event(sources, "PE-FUTURE", "2099-01-01T00:00:00Z")
    extract(EVENTS, sources, lake_dir, "b2")
    insert_event(sources, "PE-LATE", "2020-06-01T00:00:00Z")
    insert_event(sources, "PE-NOW", "2026-05-30T00:00:00Z")
    report = extract(EVENTS, sources, lake_dir, "b3")
    assert report.accepted_rows == 2
    again = extract(EVENTS, sources, lake_dir, "b4")
    assert again.accepted_rows == 0 and not again.changed

    scratch = tmp_path / "scratch"
    extract(EVENTS, sources, scratch, "s1")
    assert keys(lake_dir, EVENTS) == keys(scratch, EVENTS)
    assert {"PE-FUTURE", "PE-LATE", "PE-NOW"} <= set(keys(lake_dir, EVENTS))
    assert len(keys(lake_dir, EVENTS)) == len(set(keys(lake_dir, EVENTS)))


def test_a_rejected_mes_event_is_quarantined_once(world):
    sources, lake_dir = world
    extract(EVENTS, sources, lake_dir, "b1")
    con = sqlite3.connect(sources / "mes" / "mes.sqlite")
    con.execute("INSERT INTO production_events (event_id, serial_number, station, operation, event_type, occurred_at)"
                " VALUES ('PE-BAD', 'U', 'ST', 'op', 'complete', 'not a time')")
    con.commit()
    con.close()
    insert_event(sources, "PE-GOOD", "2026-05-30T00:00:00Z")
    first = extract(EVENTS, sources, lake_dir, "b2")
    second = extract(EVENTS, sources, lake_dir, "b3")
    assert (first.accepted_rows, first.quarantined_rows) == (1, 1)
    assert (second.accepted_rows, second.quarantined_rows, second.changed) == (0, 0, False)
    quarantine = lake.read(lake.quarantine_table(lake_dir, "mes", "production_events"))
    assert quarantine.column("record_key").to_pylist() == ["PE-BAD"]


def _event(event_id: str, serial: str, at: str) -> str:
    return json.dumps({"event_id": event_id, "serial_number": serial, "event_type": "inspection",
                       "occurred_at": at, "closed_at": at})


def test_a_line_inserted_before_the_cursor_is_read_and_nothing_twice(world, tmp_path):
    sources, lake_dir = world
    path = sources / "service" / "service_events.jsonl"
    extract(SERVICE, sources, lake_dir, "b1")
    lines = path.read_text().splitlines()
    serial = json.loads(lines[0])["serial_number"]
    # Someone rewrote the export with a new event in the middle, and a broken line after it.
    lines.insert(len(lines) // 2, _event("SE-INSERTED", serial, "2026-02-01T00:00:00Z"))
    lines.insert(len(lines) // 2 + 1, '{"event_id": "broken", ')
    path.write_text("\n".join(lines) + "\n")
    report = extract(SERVICE, sources, lake_dir, "b2")
    assert report.accepted_rows == 1 and report.quarantined_rows == 1
    assert "not valid JSON" in report.rejected.iloc[0].reason
    # Read again after another rewrite: nothing new lands, nothing is quarantined twice.
    path.write_text(path.read_text())
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[-1], *lines[:-1]]) + "\n")
    again = extract(SERVICE, sources, lake_dir, "b3")
    assert again.accepted_rows == 0 and again.quarantined_rows == 0

    scratch = tmp_path / "scratch"
    extract(SERVICE, sources, scratch, "s1")
    assert keys(lake_dir, SERVICE) == keys(scratch, SERVICE)
    assert "SE-INSERTED" in keys(lake_dir, SERVICE)


def test_a_last_line_without_newline_loads_once_complete(world):
    sources, lake_dir = world
    path = sources / "service" / "service_events.jsonl"
    extract(SERVICE, sources, lake_dir, "b1")
    serial = json.loads(path.read_text().splitlines()[0])["serial_number"]
    with path.open("a") as f:
        f.write(_event("SE-NO-NEWLINE", serial, "2026-06-01T00:00:00Z"))  # valid JSON, no newline
    assert extract(SERVICE, sources, lake_dir, "b2").accepted_rows == 1
    with path.open("a") as f:
        f.write('\n{"event_id": "SE-HALF", "serial_n')  # still being written: held back, not rejected
    held = extract(SERVICE, sources, lake_dir, "b3")
    assert held.accepted_rows == 0 and held.quarantined_rows == 0
    with path.open("a") as f:
        f.write('umber": "' + serial + '", "event_type": "inspection", "occurred_at": "2026-06-02T00:00:00Z"}\n')
    assert extract(SERVICE, sources, lake_dir, "b4").accepted_rows == 1
    assert keys(lake_dir, SERVICE).count("SE-NO-NEWLINE") == 1 and "SE-HALF" in keys(lake_dir, SERVICE)


def _versions_rows(path: Path) -> list[int]:
    from deltalake import DeltaTable

    latest = DeltaTable(str(path)).version()
    out = []
    for v in range(latest + 1):
        actions = DeltaTable(str(path), version=v).get_add_actions(flatten=True)
        import pyarrow as pa

        out.append(sum(pa.table(actions).column("num_records").to_pylist()) if actions.num_rows else 0)
    return out


def test_a_snapshot_being_rewritten_is_read_whole_or_not_at_all(world, monkeypatch):
    """PLM's exporter truncates bom_lines.csv and writes it again slowly, with one line more:
    extractions that start meanwhile wait for the writer to pause, then load the whole new export."""
    from orchestration.ingest import readers

    sources, lake_dir = world
    bom = contracts.entity("plm", "bom_lines")
    path = sources / "plm" / "bom_lines.csv"
    raw = lake.raw_table(lake_dir, "plm", "bom_lines")
    old = path.read_bytes()
    fields = old.splitlines()[1].decode().split(",")
    fields[2] = "999"  # the same parent with a new find number: one more BOM line
    new = old + (",".join(fields) + "\n").encode()
    time.sleep(readers.QUIET_S)
    before = extract(bom, sources, lake_dir, "b1").accepted_rows

    def rewrite_slowly():
        with path.open("wb") as f:
            for line in new.splitlines(keepends=True):
                f.write(line)
                f.flush()
                time.sleep(1.5 / len(new.splitlines()))

    writer = threading.Thread(target=rewrite_slowly)
    writer.start()
    time.sleep(0.2)
    try:
        report = extract(bom, sources, lake_dir, "b2")
    finally:
        writer.join()
    lines = len(new.splitlines()) - 1
    assert report.accepted_rows + report.quarantined_rows == lines
    # No version of the raw table ever held part of an export: the old one whole, then the new one.
    assert _versions_rows(raw) == [before, report.accepted_rows] and report.accepted_rows == before + 1

    # A writer that never pauses: the export is refused for now, recorded, and nothing lands.
    # A quiet spell twice the writer's stall that a loaded CI machine can cause (a 0.1 s sleep
    # has been seen to last over a second), and the wait twice that.
    monkeypatch.setattr(readers, "QUIET_S", 2.0)
    monkeypatch.setattr(readers, "WRITE_WAIT_S", 4.0)
    stop = threading.Event()

    def never_pause():
        while not stop.is_set():
            with path.open("ab") as f:
                f.write(b"")
            path.touch()
            time.sleep(0.1)

    busy = threading.Thread(target=never_pause)
    busy.start()
    try:
        with pytest.raises(ExportBreach, match="still being written"):
            extract(bom, sources, lake_dir, "b3")
    finally:
        stop.set()
        busy.join()
    assert _versions_rows(raw)[-1] == report.accepted_rows
    log = lake.read(lake.audit_table(lake_dir, "extractions")).to_pylist()
    assert [r["status"] for r in log if r["batch_id"] == "b3"] == ["failed"]
