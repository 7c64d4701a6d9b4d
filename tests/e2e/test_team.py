"""Dagster for a team, on one machine: the instance in a throwaway PostgreSQL, the steps of launched
runs on two Celery workers (`thread worker`) fed by a throwaway Redis, and the writer lock held in
PostgreSQL so that writers on different machines never write at once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from orchestration.settings import sqlalchemy_pg_url
from orchestration.simulate import simulate
from tests.helpers import (
    THREAD,
    TINY,
    build_ok,
    env_for,
    start_group,
    start_postgres,
    start_redis,
    stop_group,
    stop_postgres,
)


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    root = tmp_path_factory.mktemp("team")
    pg_url, pg = start_postgres(root)
    broker, redis = start_redis(root)
    yield root, pg_url, broker
    stop_group(redis)
    stop_postgres(pg)


def _pg(url: str):
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def _events(url: str, run_id: str, types: tuple[str, ...]) -> list[dict]:
    with _pg(url).connect() as con:
        rows = con.execute(sa.text("select event from event_logs where run_id = :run order by id"),
                           {"run": run_id}).scalars().all()
    out = []
    for raw in rows:
        record = json.loads(raw)
        event = record.get("dagster_event") or {}
        if event.get("event_type_value") in types:
            out.append({"type": event["event_type_value"], "step": event.get("step_key"),
                        "time": record["timestamp"], "message": event.get("message") or "", "raw": raw})
    return out


def test_build_on_postgres_then_a_run_on_two_celery_workers(team):
    root, pg_url, broker = team
    sources, data = root / "sources", root / "data"
    simulate(sources, TINY)
    extra = {"THREAD_DAGSTER_PG_URL": pg_url, "THREAD_CELERY_BROKER_URL": broker}

    # `thread build` keeps its runs in PostgreSQL (its steps run in its own process, as always).
    build_ok(sources, data, **extra)
    home = data / "dagster"
    assert "postgres" in (home / "dagster.yaml").read_text()
    assert not list(home.rglob("*.db")), "the instance must not fall back to SQLite"
    with _pg(pg_url).connect() as con:
        statuses = dict(con.execute(sa.text("select status, count(*) from runs group by status")).all())
    # Its stages' runs: the sources, the thread, the twins, the publish.
    assert statuses.get("SUCCESS", 0) >= 4 and set(statuses) == {"SUCCESS"}, statuses

    # Two workers, then a run launched the way the daemon launches one: its steps go to Celery.
    env = env_for(sources, data, **extra)
    workers = [start_group([THREAD, "worker", "--name", f"w{i}@test"], root / f"worker{i}.log", env=env)
               for i in (1, 2)]
    try:
        deadline = time.monotonic() + 120
        while not all("ready" in (root / f"worker{i}.log").read_text() for i in (1, 2)):
            assert time.monotonic() < deadline, [(root / f"worker{i}.log").read_text()[-2000:] for i in (1, 2)]
            assert all(w.poll() is None for w in workers), [(root / f"worker{i}.log").read_text()[-2000:]
                                                             for i in (1, 2)]
            time.sleep(0.5)
        # As `thread serve`'s daemon would (it gets the URL with the driver Dagster needs from `thread`).
        launcher_env = {**env, "THREAD_DAGSTER_PG_URL": sqlalchemy_pg_url(pg_url)}
        done = subprocess.run([str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m",
                               "orchestration.definitions", "-a", "defs", "-j", "build_plm"],
                              env=launcher_env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    finally:
        for w in workers:
            stop_group(w)

    with _pg(pg_url).connect() as con:
        run_id = con.execute(sa.text("select run_id from runs where pipeline_name = 'build_plm' "
                                     "order by create_timestamp desc limit 1")).scalar()
    handed = _events(pg_url, run_id, ("ENGINE_EVENT",))
    workers_used = {e["step"]: next(w for w in ("w1@test", "w2@test") if w in e["raw"])
                    for e in handed if "in celery worker" in e["message"]}
    steps = _events(pg_url, run_id, ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE"))
    assert not [s for s in steps if s["type"] == "STEP_FAILURE"], steps
    started = {s["step"]: s["time"] for s in steps if s["type"] == "STEP_START"}
    ended = {s["step"]: s["time"] for s in steps if s["type"] == "STEP_SUCCESS"}
    assert len(started) == 6 and set(started) == set(ended) == set(workers_used), (started, workers_used)
    # Both workers took steps (a worker takes one at a time, and a step waits for the lock)...
    assert set(workers_used.values()) == {"w1@test", "w2@test"}, workers_used
    # ...and no two steps wrote at once: each held the writer lock from before its start to after its end.
    spans = sorted((started[k], ended[k]) for k in started)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:])), spans


HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import dagster as dg
    from orchestration.resources import WriterLock
    from orchestration.settings import ThreadSettings

    settings = ThreadSettings.from_env()
    lock = WriterLock(thread=settings)
    release = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    with dg.build_init_resource_context() as context:
        print("trying", flush=True)
        lock.setup_for_execution(context)
        print(f"acquired {time.time()}", flush=True)
        while release is not None and not release.exists():
            time.sleep(0.1)
        print(f"releasing {time.time()}", flush=True)
        lock.teardown_after_execution(context)
""")


def test_writer_lock_holds_across_machines(team, tmp_path):
    """Two writers with nothing on disk in common (two machines) but the Dagster instance's
    PostgreSQL: the second waits until the first lets go, and is told who holds the lock."""
    _, pg_url, _ = team

    def writer(name: str, *release: Path) -> subprocess.Popen:
        env = env_for(tmp_path / name / "sources", tmp_path / name / "data", THREAD_DAGSTER_PG_URL=pg_url)
        return subprocess.Popen([sys.executable, "-c", HOLD, *map(str, release)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    # The first holds the lock until told; the second asks for it meanwhile (a process start is
    # seconds on a busy machine, so a fixed holding time could end before the second asks).
    release = tmp_path / "release"
    first = writer("a", release)
    assert first.stdout.readline() == "trying\n"
    line = first.stdout.readline()
    assert line.startswith("acquired"), line + first.stderr.read()
    second = writer("b")
    assert second.stdout.readline() == "trying\n", second.stderr.read()
    time.sleep(2)
    release.touch()
    out_first, _ = first.communicate(timeout=60)
    out_second, err_second = second.communicate(timeout=60)
    released = float(out_first.split()[-1])
    acquired = float(out_second.split()[1])
    assert acquired >= released, (out_first, out_second)
    assert "Waiting for the writer lock" in err_second and "pid" in err_second, err_second
