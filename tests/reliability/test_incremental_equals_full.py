"""Property: whatever happened to the sources, refreshing incrementally gives the same thread and
twins as building from scratch on the final sources.

Random small enterprises, then a random sequence of new days of activity, a day of telemetry
alone, ECO releases (by date, or from a serial number in the middle of a unit shard), retrofits and
scrapped units, each followed
by the ordinary incremental `thread build`. Shards are 10 serial numbers here
(THREAD_SHARD_DIGITS=1), so every enterprise has units on both sides of shard boundaries and a
change reaches some shards and not others. The first build builds the per-unit models two shards
at a time (THREAD_BUILD_BATCH_UNITS=20), the build from scratch in one batch. CI runs one fixed sequence (new days, a day of
telemetry, a mid-shard ECO with a retrofit action, a scrapped unit); `HYPOTHESIS_PROFILE=thorough` explores 25 random cases.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import date

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from orchestration.simulate import SimConfig, advance, simulate
from orchestration.simulate.changes import telemetry_day
from tests.helpers import build, mid_shard_serial, published, release_eco, retrofit, scrap

pytestmark = pytest.mark.slow

# CI runs the fixed sequence below (each case is about a minute of builds); the thorough profile
# draws random enterprises and sequences.
settings.register_profile("ci", phases=[Phase.explicit], deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=25, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

START = date(2026, 1, 5)


STEP = st.one_of(
    st.tuples(st.just("advance"), st.integers(1, 15)),
    st.tuples(st.just("telemetry"), st.just(1)),
    st.tuples(st.just("eco"), st.integers(0, 10_000), st.sampled_from(["retrofit", "none", "inspect"])),
    st.tuples(st.just("serial_eco"), st.integers(0, 10_000), st.sampled_from(["retrofit", "none", "inspect"])),
    st.tuples(st.just("retrofit"), st.integers(0, 10_000)),
    st.tuples(st.just("scrap"), st.integers(0, 10_000)),
)


# Always exercised, whatever the random draw: new days, an ECO and a retrofit, in one sequence.
@example(seed=3, units=24, steps=[("advance", 6), ("telemetry", 1), ("serial_eco", 5, "retrofit"), ("scrap", 2)])
@given(seed=st.integers(1, 10_000), units=st.integers(8, 30), steps=st.lists(STEP, min_size=1, max_size=4))
def test_incremental_refresh_equals_a_build_from_scratch(tmp_path_factory, seed, units, steps):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("THREAD_SHARD_DIGITS", "1")
        _incremental_equals_scratch(tmp_path_factory.mktemp("prop"), seed, units, steps)


def _incremental_equals_scratch(root, seed, units, steps):
    sources, data = root / "sources", root / "data"
    simulate(sources, SimConfig(seed=seed, units=units, parts=60, start=START, days=45, telemetry_every_h=24))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("THREAD_BUILD_BATCH_UNITS", "20")
        mp.setenv("THREAD_DBT_LOG_LEVEL", "debug")  # the SQL statements, counted below
        assert build(sources, data).ok
    assert _batches_of_last_build(data, "unit_deviations") > 1
    for n, step in enumerate(steps):
        shards_before = json.loads((data / "build" / "shards.json").read_text())["thread"]["digests"]
        if step[0] == "advance":
            advance(sources, step[1])
        elif step[0] == "telemetry":
            telemetry_day(sources)
        elif step[0] == "eco":
            release_eco(sources, step[1], n + 1, step[2])
        elif step[0] == "serial_eco":
            release_eco(sources, step[1], n + 1, step[2], from_serial=mid_shard_serial(sources, step[1], 1))
        elif step[0] == "scrap":
            scrap(sources, step[1])
        else:
            retrofit(sources, step[1], n + 1)
        result = build(sources, data)
        assert result.ok, result.failed
        if step[0] == "telemetry":  # no per-unit model reads telemetry: no shard digested or rebuilt
            state = json.loads((data / "build" / "shards.json").read_text())["thread"]
            assert state["rebuilt"] == [] and state["digests"] == shards_before
        if step[0] in ("retrofit", "scrap"):  # one unit changed: one shard rebuilt, the others kept
            rebuilt = json.loads((data / "build" / "shards.json").read_text())["thread"]["rebuilt"]
            assert len(rebuilt) == 1, rebuilt
            # A retrofit is a service event: nothing MES built changed.
            wanted = {"any": 1, "built": 0 if step[0] == "retrofit" else 1, "configuration": 1}
            assert _rebuilt_by_family(data) == wanted
        if step[0] in ("eco", "serial_eco"):
            # PLM only, and a revision nobody holds: the shards whose units use the part are
            # rebuilt, but not their as-built or configuration models (the families' digests).
            families = _rebuilt_by_family(data)
            assert families["any"] > 0 and families["built"] == families["configuration"] == 0, families

    scratch_sources, scratch = root / "scratch_sources", root / "scratch"
    shutil.copytree(sources, scratch_sources)
    assert build(scratch_sources, scratch).ok
    incremental, full = published(data / "warehouse.duckdb"), published(scratch / "warehouse.duckdb")
    assert incremental.keys() == full.keys()
    differ = {t: (len(incremental[t]), len(full[t])) for t in full if incremental[t] != full[t]}
    assert not differ, differ


def _batches_of_last_build(data, model: str) -> int:
    """How many batches of shards the last dbt run inserted into `model` (the statements in its
    log, there at THREAD_DBT_LOG_LEVEL=debug)."""
    lines = (data / "logs" / "dbt" / "dbt.log").read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    starts = [i for i, e in enumerate(events) if e["info"]["name"] == "MainReportVersion"]
    insert = re.compile(rf'^(/\*.*?\*/)?\s*insert into "build"\."thread"\."{model}"', re.DOTALL)
    return sum(1 for e in events[starts[-1]:] if e["info"]["name"] == "SQLQuery" and insert.match(e["data"]["sql"]))


def _rebuilt_by_family(data) -> dict[str, int]:
    """How many shards the last dbt run rebuilt: for any model, and for each family's models."""
    import duckdb

    con = duckdb.connect(str(data / "build" / "build.duckdb"), read_only=True)
    try:
        n, built, configuration = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE built), count(*) FILTER (WHERE configuration) "
            "FROM intermediate.int_shards_changed").fetchone()
    finally:
        con.close()
    return {"any": n, "built": built, "configuration": configuration}
