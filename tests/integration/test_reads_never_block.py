"""Analysts keep warehouse.duckdb open while refreshes run: no error, never a half-built state.

The readers are other processes, as analysts' DuckDB CLI, notebooks and BI tools are: one holds
its connection open for the whole refresh, one reconnects for every query.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import duckdb
import pytest

from orchestration.simulate import advance
from tests.helpers import build

STATE = ("select (select count(*) from thread.units), (select count(*) from twin.unit_twin), "
         "(select sum(hash(serial_number, configuration_hash)) from twin.unit_twin)::varchar, "
         "(select count(*) from thread.unit_as_built)")

READER = """
import duckdb, json, os, sys, time
warehouse, out, stop, mode, query = sys.argv[1:6]
held = duckdb.connect(warehouse, read_only=True) if mode == "held" else None
with open(out, "w") as f:
    while not os.path.exists(stop):
        try:
            con = held or duckdb.connect(warehouse, read_only=True)
            f.write(json.dumps({"state": list(con.execute(query).fetchone())}) + "\\n")
            if held is None:
                con.close()
        except Exception as e:
            f.write(json.dumps({"error": repr(e)}) + "\\n")
        f.flush()
        time.sleep(0.05)
"""


def state(warehouse):
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return list(con.execute(STATE).fetchone())
    finally:
        con.close()


def start_reader(tmp_path, warehouse, mode):
    out, stop = tmp_path / f"{mode}.jsonl", tmp_path / "stop"
    proc = subprocess.Popen([sys.executable, "-c", READER, str(warehouse), str(out), str(stop), mode, STATE])
    return proc, out


def observed(out):
    lines = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
    return [x["state"] for x in lines if "state" in x], [x["error"] for x in lines if "error" in x]


@pytest.mark.parametrize("refresh", ["full build", "incremental refresh"])
def test_readers_see_the_old_or_the_new_state_and_never_fail(refresh, built_small_copy, tmp_path):
    sources, data = built_small_copy
    warehouse = data / "warehouse.duckdb"
    if refresh == "incremental refresh":
        advance(sources, 3)
    else:
        (data / "build" / "build.duckdb").unlink()  # the next build starts the thread from scratch
    old = state(warehouse)

    readers = [start_reader(tmp_path, warehouse, mode) for mode in ("held", "fresh")]
    time.sleep(1.0)
    try:
        result = build(sources, data)
        time.sleep(1.5)
    finally:
        (tmp_path / "stop").touch()
        for proc, _ in readers:
            proc.wait(30)
    new = state(warehouse)

    assert result.ok, result.failed
    (held, held_errors), (fresh, fresh_errors) = (observed(out) for _, out in readers)
    assert held_errors == [] and fresh_errors == []
    assert held and all(s == old for s in held), "an open connection keeps reading the warehouse it opened"
    assert fresh and all(s in (old, new) for s in fresh)
    assert fresh[0] == old and fresh[-1] == new
    if refresh == "incremental refresh":
        assert new != old
