"""Property: whatever happened to the sources, refreshing incrementally gives the same thread and
twins as building from scratch on the final sources.

Random small enterprises, then a random sequence of new days of activity, ECO releases and
retrofits, each followed by the ordinary incremental `thread build`. CI runs one fixed sequence
(new days, an ECO, a retrofit); `HYPOTHESIS_PROFILE=thorough` explores 25 random cases.
"""

from __future__ import annotations

import os
import shutil
from datetime import date

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from orchestration.simulate import SimConfig, advance, simulate
from tests.helpers import build, published, release_eco, retrofit

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
    st.tuples(st.just("eco"), st.integers(0, 10_000), st.sampled_from(["retrofit", "none", "inspect"])),
    st.tuples(st.just("retrofit"), st.integers(0, 10_000)),
)


# Always exercised, whatever the random draw: new days, an ECO and a retrofit, in one sequence.
@example(seed=3, units=10, steps=[("advance", 6), ("eco", 5, "retrofit"), ("retrofit", 7)])
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
