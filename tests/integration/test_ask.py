"""`thread ask`: every question, its formats, and clear errors."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from orchestration.ask import QUESTIONS, AskError, ask
from tests.helpers import query


def thread(data: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "THREAD_DATA_DIR": str(data)}
    return subprocess.run([str(Path(sys.executable).parent / "thread"), *args], env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def keys(built_small):
    wh = built_small / "warehouse.duckdb"
    part, rev = query(wh, "select part_number, revision from thread.unit_configuration c join thread.parts p "
                          "using (part_number) where p.part_type = 'component' group by all order by count(*) desc limit 1")[0]
    serial = query(wh, "select serial_number from twin.unit_twin order by pending_retrofits desc, 1 limit 1")[0][0]
    eco = query(wh, "select eco_number from thread.eco_impact group by 1 order by count(*) desc limit 1")[0][0]
    lot = query(wh, "select component_serial from thread.unit_component_serials order by removed_by nulls last, 1 "
                    "limit 1")[0][0]
    return {"part": part, "rev": rev, "serial": serial, "eco": eco, "wh": wh, "lot": lot}


def test_every_question_answers(keys):
    wh = keys["wh"]
    answers = {
        "units-with": ask(wh, "units-with", f"{keys['part']}@{keys['rev']}"),
        "where-used": ask(wh, "where-used", keys["part"]),
        "eco-impact": ask(wh, "eco-impact", keys["eco"]),
        "eco-gaps": ask(wh, "eco-gaps"),
        "due-soon": ask(wh, "due-soon"),
        "trace": ask(wh, "trace", keys["serial"]),
        "twin": ask(wh, "twin", keys["serial"]),
        "reliability": ask(wh, "reliability"),
        "carriers": ask(wh, "carriers", keys["lot"]),
        "investigate": ask(wh, "investigate", f"{keys['part']}@{keys['rev']}"),
        "twin-changes": ask(wh, "twin-changes", keys["serial"]),
    }
    assert set(answers) == set(QUESTIONS)
    for name, sections in answers.items():
        assert sections and all(s.rows for s in sections if s.title not in ("ecos", "service")), name
    holders = query(wh, "select count(distinct serial_number) from thread.unit_configuration "
                        "where part_number = ? and revision = ?", [keys["part"], keys["rev"]])[0][0]
    assert len(answers["units-with"][0].rows) >= holders
    assert [s.title for s in answers["trace"]] == ["unit", "genealogy", "ecos", "service", "sensors"]
    assert any(r[0] == "product" or r[1] == "product" for r in answers["where-used"][0].rows)
    due = [dict(zip(answers["due-soon"][0].columns, r)) for r in answers["due-soon"][0].rows]
    assert [r["due_by"] for r in due] == sorted(r["due_by"] for r in due), "due first"
    assert all(r["overdue"] == (r["due_by"] < datetime.now(timezone.utc)) for r in due)
    unvalidated = {v for (v,) in query(wh, "select version from twin.rul_models where held_out_units = 0")}
    assert all(("model not validated" in r["note"]) == (r["model"] in unvalidated) for r in due)
    assert all(r["model_learned_from_failed_units"] > 0 for r in due)
    gaps = answers["eco-gaps"][0]
    released = [r[gaps.columns.index("released_at")] for r in gaps.rows]
    assert released == sorted(released), "oldest first"


def test_unknown_keys_get_a_clear_error_with_suggestions(keys):
    wh = keys["wh"]
    with pytest.raises(AskError, match=r"Unknown serial number 'HX200-00001'\. Did you mean"):
        ask(wh, "trace", "HX200-00001")
    with pytest.raises(AskError, match="Unknown part"):
        ask(wh, "where-used", "NOPE-1")
    with pytest.raises(AskError, match="Unknown ECO"):
        ask(wh, "eco-impact", "ECO-0")
    with pytest.raises(AskError, match="has no revision 'ZZ'"):
        ask(wh, "units-with", f"{keys['part']}@ZZ")
    with pytest.raises(AskError, match="Unknown question"):
        ask(wh, "who-knows")


def test_arguments_are_bound_never_pasted(keys):
    wh = keys["wh"]
    before = query(wh, "select count(*) from thread.units")[0][0]
    with pytest.raises(AskError, match="Unknown part"):
        ask(wh, "where-used", "x'; drop table thread.units; --")
    assert query(wh, "select count(*) from thread.units")[0][0] == before


def test_command_line_formats(keys, built_small):
    table = thread(built_small, "ask", "reliability", keys["part"])
    assert table.returncode == 0 and keys["part"] in table.stdout
    as_csv = thread(built_small, "ask", "units-with", keys["part"], "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert rows and set(rows[0]) == {"serial_number", "product_part_number", "status", "site", "carries_now", "shipped_with"}
    as_json = thread(built_small, "ask", "trace", keys["serial"], "--format", "json")
    doc = json.loads(as_json.stdout)
    assert doc["unit"][0]["serial_number"] == keys["serial"]
    bad = thread(built_small, "ask", "twin", "NO-SUCH-UNIT")
    assert bad.returncode != 0 and "Unknown serial number 'NO-SUCH-UNIT'" in bad.stderr


INJECTIONS = ["' OR '1'='1", "x'; DROP TABLE thread.units; --", "%", "_", "\" OR 1=1 --", "$part", "?",
              "1) UNION SELECT serial_number FROM twin.unit_twin --"]


@pytest.mark.parametrize("injection", INJECTIONS)
def test_no_argument_is_pasted_into_sql(keys, injection):
    """Pasted into SQL, each of these would match rows (or fail to parse); bound, it names nothing."""
    wh = keys["wh"]
    for q in QUESTIONS.values():
        if q.argument is None:
            continue
        with pytest.raises(AskError, match="[Uu]nknown|[Nn]o "):
            ask(wh, q.name, injection)
    # The revision half of PART@REV, behind a real part.
    try:
        sections = ask(wh, "units-with", f"{keys['part']}@{injection}")
    except AskError:
        pass
    else:
        assert all(not s.rows for s in sections)
    assert query(wh, "select count(*) from thread.units")[0][0] > 0


def test_an_injection_on_the_command_line_is_a_clear_error(keys):
    done = thread(keys["wh"].parent, "ask", "trace", "' OR '1'='1")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "Unknown serial" in (done.stdout + done.stderr)


def test_status_shows_each_systems_newest_event_beside_its_extraction(keys):
    wh = keys["wh"]
    newest_service = max(query(wh, "select max(occurred_at) from thread.service_events")[0][0],
                         query(wh, "select max(last_telemetry_at) from twin.unit_twin")[0][0])
    env = {**os.environ, "THREAD_DATA_DIR": str(wh.parent), "COLUMNS": "240"}
    out = subprocess.run([str(Path(sys.executable).parent / "thread"), "status"], env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert "newest event" in out.stdout
    service = next(line for line in out.stdout.splitlines() if line.strip().startswith("service"))
    assert f"{newest_service.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC" in service


def test_status_is_a_monitoring_check_that_writes_nothing(tmp_path):
    """No warehouse: critical (exit 2), in JSON too, and the data directory is not created."""
    data = tmp_path / "nothing-here"
    table = thread(data, "status")
    assert table.returncode == 2 and "CRITICAL" in table.stdout, table.stdout + table.stderr
    as_json = thread(data, "status", "--format", "json")
    doc = json.loads(as_json.stdout)
    assert as_json.returncode == 2 and doc["state"] == "critical" and doc["twins"] is None
    assert [s["system"] for s in doc["systems"]] == ["plm", "mes", "erp", "service"]
    assert all(s["is_late"] and s["last_success_at"] is None for s in doc["systems"])
    assert not data.exists()


def test_several_part_answers_as_csv_one_section_at_a_time(keys, built_small):
    import pandas as pd

    serial = keys["serial"]
    mixed = thread(built_small, "ask", "twin", serial, "--format", "csv")
    assert mixed.returncode == 2 and "--section" in mixed.stderr and "components" in mixed.stderr
    as_json = json.loads(thread(built_small, "ask", "twin", serial, "--format", "json").stdout)
    assert set(as_json) == {"state", "components", "sensors"}
    for section, rows in as_json.items():
        done = thread(built_small, "ask", "twin", serial, "--format", "csv", "--section", section)
        assert done.returncode == 0, done.stderr
        frame = pd.read_csv(io.StringIO(done.stdout))  # a ragged file would not parse
        assert list(frame.columns) == list(rows[0]) and len(frame) == len(rows)
    state = pd.read_csv(io.StringIO(thread(built_small, "ask", "twin", serial, "--format", "csv", "--section",
                                           "state").stdout))
    assert state["serial_number"].tolist() == [serial]
    wrong = thread(built_small, "ask", "twin", serial, "--section", "nope")
    assert wrong.returncode != 0 and "state, components, sensors" in wrong.stderr


def test_piped_tables_keep_each_row_on_one_line(keys, built_small):
    """Output to a pipe is not folded at 80 columns: every serial number stays whole on its line."""
    done = thread(built_small, "ask", "units-with", keys["part"])
    assert done.returncode == 0
    serials = [r[0] for r in query(keys["wh"], "select serial_number from thread.unit_configuration "
                                               "where part_number = ?", [keys["part"]])]
    lines = done.stdout.splitlines()
    assert max(map(len, lines)) > 80
    assert all(sum(1 for line in lines if s in line) == 1 for s in serials)


def test_extra_arguments_and_stdout_export_are_handled(keys, built_small):
    extra = thread(built_small, "ask", "eco-gaps", "SOMETHING")
    assert extra.returncode != 0 and "takes no argument" in extra.stderr
    exported = thread(built_small, "twin", "export", keys["serial"], "--out", "-")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["assetAdministrationShells"]
    assert not (Path.cwd() / "-").exists()


def test_the_command_lists_every_question(tmp_path):
    done = thread(tmp_path, "ask", "--help")
    assert done.returncode == 0
    assert all(f"\n  {name}" in done.stdout for name in QUESTIONS), done.stdout
