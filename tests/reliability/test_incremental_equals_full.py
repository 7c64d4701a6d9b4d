"""Property: whatever happened to the sources, refreshing incrementally gives the same thread and
twins as building from scratch on the final sources.

Random small enterprises, then a random sequence of new days of activity, ECO releases and
retrofits, each followed by the ordinary incremental `thread build`. `HYPOTHESIS_PROFILE=thorough`
explores more cases than CI does.
"""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestration.simulate import SimConfig, advance, simulate
from tests.conftest import build
from tests.reliability.conftest import published

pytestmark = pytest.mark.slow

settings.register_profile("ci", max_examples=2, derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=25, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")

START = date(2026, 1, 5)


def rows(path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def horizon(sources) -> str:
    ts = [json.loads(x)["occurred_at"] for x in (sources / "service" / "service_events.jsonl").read_text().splitlines()]
    return max(ts) if ts else f"{START}T00:00:00Z"


def release_eco(sources, pick: int, n: int, action: str) -> None:
    """Engineering releases ECO-77<n>: a new revision of a released component, effective by date."""
    revisions = [r for r in rows(sources / "plm" / "part_revisions.csv")
                 if r["state"] == "released" and r["part_number"].startswith("C-")]
    part = revisions[pick % len(revisions)]
    at = horizon(sources)
    new_rev = part["revision"] + "Z" * n
    eco = f"ECO-77{n:02d}"
    effective = (date.fromisoformat(at[:10]) - timedelta(days=20)).isoformat()
    with (sources / "plm" / "part_revisions.csv").open("a") as f:
        f.write(f"{part['part_number']},{new_rev},released,{at},{eco},Per {eco}\n")
    with (sources / "plm" / "ecos.csv").open("a") as f:
        f.write(f"{eco},Change {part['part_number']},Test,released,{at},{at},date,{effective},{action}\n")
    with (sources / "plm" / "eco_affected_items.csv").open("a") as f:
        f.write(f"{eco},{part['part_number']},{part['revision']},{new_rev}\n")


def retrofit(sources, pick: int, n: int) -> None:
    """Service swaps one fitted component of one unit for a new revision."""
    con = sqlite3.connect(sources / "mes" / "mes.sqlite")
    fitted = con.execute("SELECT serial_number, part_number, revision FROM as_built_components "
                         "WHERE part_number LIKE 'C-%' ORDER BY 1, 2, 3").fetchall()
    con.close()
    serial, part, rev = fitted[pick % len(fitted)]
    at = horizon(sources)
    event = {"event_id": f"SE-PROP-{n}", "serial_number": serial, "event_type": "retrofit", "occurred_at": at,
             "closed_at": at, "removed_part_number": part, "removed_revision": rev, "installed_part_number": part,
             "installed_revision": rev + "R", "installed_component_serial": f"R-{n}", "eco_number": None,
             "notes": "property test"}
    with (sources / "service" / "service_events.jsonl").open("a") as f:
        f.write(json.dumps(event) + "\n")


STEP = st.one_of(
    st.tuples(st.just("advance"), st.integers(1, 15)),
    st.tuples(st.just("eco"), st.integers(0, 10_000), st.sampled_from(["retrofit", "none", "inspect"])),
    st.tuples(st.just("retrofit"), st.integers(0, 10_000)),
)


@given(seed=st.integers(1, 10_000), units=st.integers(8, 20), steps=st.lists(STEP, min_size=1, max_size=2))
def test_incremental_refresh_equals_a_build_from_scratch(tmp_path_factory, seed, units, steps):
    root = tmp_path_factory.mktemp("prop")
    sources, data = root / "sources", root / "data"
    simulate(sources, SimConfig(seed=seed, units=units, parts=60, start=START, days=45, telemetry_every_h=24))
    assert build(sources, data).ok
    for n, step in enumerate(steps):
        if step[0] == "advance":
            advance(sources, step[1])
        elif step[0] == "eco":
            release_eco(sources, step[1], n + 1, step[2])
        else:
            retrofit(sources, step[1], n + 1)
        result = build(sources, data)
        assert result.ok, result.failed

    scratch_sources, scratch = root / "scratch_sources", root / "scratch"
    shutil.copytree(sources, scratch_sources)
    assert build(scratch_sources, scratch).ok
    incremental, full = published(data / "warehouse.duckdb"), published(scratch / "warehouse.duckdb")
    assert incremental.keys() == full.keys()
    differ = {t: (len(incremental[t]), len(full[t])) for t in full if incremental[t] != full[t]}
    assert not differ, differ
