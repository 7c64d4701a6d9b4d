"""The benchmark harness (`make bench`): the whole thread at S, M or L, measured against the floor.

Every figure comes from one run on this machine: the floor (DuckDB scanning every source once),
the full build per stage (wall time, rows per second, peak memory of the process tree), three
incremental scenarios from clean copies, and the analyst questions' latency.
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import psutil

from orchestration.settings import ThreadSettings
from orchestration.simulate.changes import release_eco, telemetry_day
from orchestration.twins import key_size

SCALES = {
    # units, parts, telemetry interval: M reaches ~5 M telemetry rows, L ~50 M.
    "S": dict(units=1_000, parts=300, telemetry_every_h=24),
    "M": dict(units=10_000, parts=1_000, telemetry_every_h=24),
    "L": dict(units=100_000, parts=2_000, telemetry_every_h=24),
}
TARGETS = {
    "full_over_floor": "<= 10 (at M)",
    "eco_incremental_over_full": "<= 0.10 (at M), only affected twins",
    "query_p95_ms": "<= 200 (at M)",
    "peak_rss_mb": "L: <= 8192",
    "growth_M_to_L": "<= 12x for 10x data",
}


class PeakMemory:
    """Samples the resident memory of this process and all its children."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak, self.window, self._stop = interval, 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            try:
                procs = [me, *me.children(recursive=True)]
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            self.peak = max(self.peak, total)
            self.window = max(self.window, total)
            time.sleep(self.interval)

    def take_window(self) -> float:
        """Peak MB since the last call (a stage's own peak)."""
        peak, self.window = self.window, 0
        return round(peak / 2**20, 1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mb(self) -> float:
        return round(self.peak / 2**20, 1)


def floor(sources: Path) -> tuple[float, int]:
    """Seconds for DuckDB to scan every export once (MES tables through sqlite3: no offline
    DuckDB sqlite extension), and the rows it saw."""
    started = time.monotonic()
    rows = 0
    con = duckdb.connect()
    for f in sorted((sources / "plm").glob("*.csv")) + sorted((sources / "erp").glob("*.csv")):
        rows += con.execute(f"SELECT count(*) FROM read_csv('{f}', all_varchar = true)").fetchone()[0]
    for f in sorted((sources / "service").glob("*.jsonl")):
        rows += con.execute(f"SELECT count(*) FROM read_json('{f}', format = 'newline_delimited', "
                            "records = true, maximum_object_size = 10000000)").fetchone()[0]
    rows += con.execute(f"SELECT count(*) FROM read_parquet('{sources}/service/telemetry/*.parquet') "
                        "WHERE value IS NOT NULL").fetchone()[0]
    con.close()
    db = sqlite3.connect(sources / "mes" / "mes.sqlite")
    for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        for _ in db.execute(f"SELECT * FROM {table}"):
            rows += 1
    db.close()
    return time.monotonic() - started, rows


def enterprise(scale: str, seed: int, cache: Path) -> tuple[Path, float | None]:
    """The cached enterprise for a scale and seed, generated (and timed) the first time."""
    from orchestration.simulate import SimConfig, simulate

    root = cache / f"{scale}-seed{seed}"
    sources = root / "sources"
    meta = root / "simulate.json"
    if meta.exists():
        return sources, json.loads(meta.read_text())["seconds"]
    shutil.rmtree(root, ignore_errors=True)
    cfg = SimConfig(seed=seed, start=date(2025, 11, 1), days=365, **SCALES[scale])
    started = time.monotonic()
    simulate(sources, cfg)
    seconds = time.monotonic() - started
    meta.write_text(json.dumps({"seconds": seconds, "config": {k: str(v) for k, v in asdict(cfg).items()}}))
    return sources, seconds


@dataclass
class Stage:
    seconds: float = 0.0
    rows: int = 0
    peak_mb: float = 0.0


# The enterprises are simulated up to a fixed day (so they can be cached): by the wall clock their
# telemetry stopped long ago, which must not turn every twin unknown and stale.
SILENCE_HOURS = str(24 * 365 * 20)


def _env(sources: Path, data: Path, units_per_partition: int = 0) -> ThreadSettings:
    """The product configured as a user would: through its environment."""
    settings = ThreadSettings(sources_dir=str(sources), data_dir=str(data), pii_salt="bench-salt",
                              twin_units_per_partition=units_per_partition)
    settings.export_env()
    os.environ.pop("DAGSTER_HOME", None)  # each measurement names its instance (_instance)
    os.environ.setdefault("THREAD_TELEMETRY_SILENCE_HOURS", SILENCE_HOURS)
    return settings


# Where the Dagster instance of the builds and refreshes keeps its events (results before
# 2026-12-05 18:00 have no such field: an in-memory instance; before the thirteenth part of
# 2026-12-07, "sqlite on disk": a new connection per read or write, as Dagster opens them).
KEPT_SQLITE = "sqlite on disk, connections kept"
DAGSTER_STORAGE = KEPT_SQLITE


def _instance(sources: Path, data: Path):
    """The Dagster instance `thread build` uses: its storage on disk (SQLite) under the data
    directory, configured as the product configures it. Its cost per event (two SQLite writes
    per asset event) is part of what a refresh pays: at 10,000 unit partitions about four times
    that of an in-memory instance, which the bench used before 2026-12-05 18:00."""
    import dagster as dg

    from orchestration import services
    from orchestration.settings import dagster_home

    # Only where the home is: the measurement's own _env call sets the environment it runs in.
    settings = ThreadSettings(sources_dir=str(sources), data_dir=str(data), pii_salt="bench-salt")
    services.storage_asked_less()  # as `thread build` asks it
    return dg.DagsterInstance.from_config(str(dagster_home(settings)))


def full_build(sources: Path, data: Path, instance, mem: PeakMemory | None = None,
               units_per_partition: int = 0) -> tuple[dict[str, Stage], object]:
    from orchestration.build import run_build
    from orchestration.definitions import defs

    settings = _env(sources, data, units_per_partition)
    stages: dict[str, Stage] = {}
    clock = {"t": time.monotonic()}

    def progress(stage, outcomes):
        now = time.monotonic()
        name = "extract" if stage in ("sources", "plm", "mes", "erp", "service") else stage
        s = stages.setdefault(name, Stage())
        s.seconds += now - clock["t"]
        clock["t"] = now
        if mem is not None:
            s.peak_mb = max(s.peak_mb, mem.take_window())

    result = run_build(defs, instance, settings, progress, data / "logs" / "bench.log")
    return stages, result


def _warm_dbt(settings: ThreadSettings) -> None:
    """dbt's partial parse is keyed on the profile, which names the build database: in a copied
    data directory the first dbt run would re-parse the whole project (about 3 s at M), which a
    deployment, always at the same path, does not pay after its first build. Parsed once here,
    before the clock starts."""
    from orchestration.dbt_project import PROJECT
    from orchestration.defs.thread import dbt_resource

    dbt_resource().cli(["parse", "--quiet", "--vars", json.dumps(settings.dbt_vars()), *settings.dbt_log_args],
                       manifest=PROJECT.manifest_path, target_path=settings.dbt_target_dir).wait()


def _step_seconds(instance, run_id: str, into: dict[str, float]) -> None:
    """Add each step's start-to-end seconds in a run (from Dagster's event log) to `into`."""
    from dagster import DagsterEventType

    from orchestration.defs.thread import PHASES_LOG

    started: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        if entry.user_message.startswith(PHASES_LOG):  # the thread step's own phases
            for phase, seconds in json.loads(entry.user_message[len(PHASES_LOG):]).items():
                into[f"thread_dbt: {phase}"] = round(into.get(f"thread_dbt: {phase}", 0.0) + seconds, 2)
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            started[event.step_key] = entry.timestamp
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE) \
                and event.step_key in started:
            name = event.step_key.split("[")[0]
            into[name] = round(into.get(name, 0.0) + entry.timestamp - started.pop(event.step_key), 2)


def refresh(changed: list[str], sources: Path, data: Path, instance, units_per_partition: int = 0) -> dict:
    """What the sensors do for a change, in-process and in the same runs: the source sensor's run
    (extract the changed entities, then the thread: dbt, estimates, twin change set), then the
    twin-refresh sensor's runs (the changed units' twins and the publish; a publish alone when no
    twin changed)."""
    import dagster as dg

    from orchestration.build import QUIET, _captured
    from orchestration.definitions import defs
    from orchestration.defs import twins as twin_defs
    from orchestration.defs.keys import TWIN_KEY, WAREHOUSE_KEY
    from orchestration.defs.thread import THREAD_STEP_KEYS, WITH_THREAD_TAG

    settings = _env(sources, data, units_per_partition)
    _warm_dbt(settings)
    keys = [dg.AssetKey(k.split("/")) for k in changed]
    assets, resources = list(defs.assets), defs.resources
    started = time.monotonic()
    # Where the time goes: each step's seconds (summed over the twin runs), and what lies between
    # the steps (run start-up, planning, Dagster's bookkeeping) as the rest.
    meta: dict = {"steps_s": {}}
    run_ids = []  # each run's steps are read from the event log after the clock stops
    log = data / "logs" / "bench.log"

    def run(selection: list, tags: dict):
        with _captured(log):
            r = dg.materialize(assets, resources=resources, instance=instance, run_config=QUIET, tags=tags,
                               selection=dg.AssetSelection.assets(*selection))
        assert r.success
        run_ids.append(r.run_id)
        return r

    run([*keys, *THREAD_STEP_KEYS], {WITH_THREAD_TAG: "true"})
    plan, new = twin_defs.plan(instance, settings)
    if new:
        instance.add_dynamic_partitions(twin_defs.UNITS.name, new)
    for tags in plan:
        r = run([TWIN_KEY, WAREHOUSE_KEY], tags)
        for e in r.get_asset_materialization_events():
            m = e.materialization.metadata
            if "refreshed_units" in m:
                meta["refreshed"] = meta.get("refreshed", 0) + m["refreshed_units"].value
                break
    if not plan:
        run([WAREHOUSE_KEY], {})
    meta["seconds"] = time.monotonic() - started
    for run_id in run_ids:
        _step_seconds(instance, run_id, meta["steps_s"])
    steps = sum(v for k, v in meta["steps_s"].items() if not k.startswith("thread_dbt: "))
    meta["steps_s"]["(between steps)"] = round(meta["seconds"] - steps, 2)
    meta.setdefault("refreshed", 0)
    return meta


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """`thread serve` on a copy, as a user runs it (its own process group, loopback)."""

    def __init__(self, sources: Path, data: Path, log: Path, units_per_partition: int = 0):
        import subprocess
        import sys

        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("THREAD_", "DAGSTER_"))}
        env.update({"THREAD_SOURCES_DIR": str(sources), "THREAD_DATA_DIR": str(data), "THREAD_PII_SALT": "bench-salt",
                    "THREAD_TWIN_UNITS_PER_PARTITION": str(units_per_partition),
                    **{k: v for k, v in os.environ.items()
                       if k in ("THREAD_DUCKDB_MEMORY_LIMIT", "THREAD_DBT_THREADS")},
                    "THREAD_TELEMETRY_SILENCE_HOURS": os.environ.get("THREAD_TELEMETRY_SILENCE_HOURS", SILENCE_HOURS)})
        thread = str(Path(sys.executable).parent / "thread")
        self.proc = subprocess.Popen([thread, "serve", "--port", str(self.port)], env=env, stdout=log.open("w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def graphql(self, query: str) -> dict:
        import urllib.request

        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/graphql", json.dumps({"query": query}).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r).get("data") or {}

    def wait_ready(self, sensors: set[str], timeout: float = 300) -> None:
        """Until every named sensor has finished a tick (its first look sets what counts as new)."""
        query = """{ sensorsOrError(repositorySelector: {repositoryName: "__repository__",
                     repositoryLocationName: "orchestration.definitions:defs"}) {
                     ... on Sensors { results { name sensorState { ticks(limit: 1) { status } } } } } }"""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                results = self.graphql(query).get("sensorsOrError", {}).get("results", [])
                if sensors <= {r["name"] for r in results if any(
                        t["status"] in ("SKIPPED", "SUCCESS") for t in r["sensorState"]["ticks"])}:
                    return
            except OSError:
                pass
            time.sleep(1)
        raise RuntimeError("thread serve did not come up")

    def stop(self) -> None:
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=60)
        except Exception:  # noqa: BLE001
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _settled(warehouse: Path, condition: str) -> bool:
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error:
        return False
    try:
        return bool(con.execute(condition).fetchone()[0])
    except duckdb.Error:
        return False
    finally:
        con.close()


def wait_published(warehouse: Path, condition: str, started: float, timeout: float = 1800) -> float:
    while time.monotonic() - started < timeout:
        if _settled(warehouse, condition):
            return time.monotonic() - started
        time.sleep(0.25)
    raise RuntimeError(f"not published within {timeout} s: {condition}")


class Api:
    """`thread api` on a built data directory, in its own process group."""

    def __init__(self, data: Path, log: Path):
        import subprocess
        import sys

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "THREAD_DATA_DIR": str(data)}
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "thread"), "api", "--port", str(self.port)],
                                     env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        import signal

        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=60)


class Subscriber(Api):
    """`thread api` and one client of its event stream, noting when the first event arrives whose
    reasons include `reason`."""

    def __init__(self, data: Path, log: Path, reason: str):
        super().__init__(data, log)
        con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
        self.after = con.execute("SELECT coalesce(max(event_id), '') FROM twin.twin_change_events").fetchone()[0]
        con.close()
        self.reason, self.received = reason, None
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        import urllib.request

        deadline = time.monotonic() + 60
        while True:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{self.port}/events",
                                             headers={"Last-Event-ID": self.after})
                with urllib.request.urlopen(req, timeout=3600) as r:
                    for raw in r:
                        line = raw.decode()
                        if line.startswith("data:") and self.reason in json.loads(line[5:])["refresh_reasons"]:
                            self.received = time.monotonic()
                            return
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.2)


def live_eco(sources: Path, data: Path, workdir: Path, units_per_partition: int = 0) -> tuple[float, float | None]:
    """With `thread serve` running: an ECO appended to PLM's export -> its affected twins published
    (the warehouse shows the ECO's impact and no twin waiting for a refresh), and -> the first
    event of an ECO-driven twin change received by a client of `thread api`."""
    _warm_dbt(_env(sources, data, units_per_partition))
    server = Served(sources, data, workdir / "serve.log", units_per_partition)
    subscriber = None
    try:
        server.wait_ready({"plm_exports", "mes_exports", "service_exports", "thread_refresh", "twin_refresh"})
        # Let the first thread run after start (a check: nothing changed) finish first.
        wait_published(data / "warehouse.duckdb", "SELECT count(*) = 0 FROM twin.unit_twin WHERE is_stale",
                       time.monotonic())
        subscriber = Subscriber(data, workdir / "api.log", "eco")
        release = eco_target(sources, data)
        # From the ECO in PLM's export files (before the thirteenth part of 2026-12-07, from before
        # the bench chose its part in the warehouse: 1.5 s more at 10,000 units).
        started = time.monotonic()
        release()
        published = wait_published(data / "warehouse.duckdb", f"""SELECT
            (SELECT count(*) FROM thread.eco_impact WHERE eco_number = '{BENCH_ECO}') > 0
            AND (SELECT count(*) FROM twin.unit_twin WHERE is_stale) = 0""", started)
        subscriber.thread.join(timeout=60)
        return published, (subscriber.received - started) if subscriber.received else None
    finally:
        if subscriber is not None:
            subscriber.stop()
        server.stop()


def run_live_default(workdir: Path, say=print) -> dict:
    """The default enterprise (`thread simulate`: 300 units, a year) with `thread serve` running:
    `thread simulate advance --days 1` -> every twin published with the new day."""
    import subprocess
    import sys

    from orchestration.simulate import SimConfig, advance, simulate

    shutil.rmtree(workdir, ignore_errors=True)
    sources, data = workdir / "sources", workdir / "data"
    simulate(sources, SimConfig())
    subprocess.run([str(Path(sys.executable).parent / "thread"), "build"], check=True, capture_output=True,
                   env={**os.environ, "THREAD_SOURCES_DIR": str(sources), "THREAD_DATA_DIR": str(data),
                        "THREAD_PII_SALT": "bench-salt"})  # into the Dagster home serve will use
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    before = con.execute("SELECT max(last_telemetry_at) FROM twin.unit_twin").fetchone()[0]
    con.close()
    server = Served(sources, data, workdir / "serve.log")
    try:
        server.wait_ready({"plm_exports", "mes_exports", "service_exports", "thread_refresh", "twin_refresh"})
        wait_published(data / "warehouse.duckdb", "SELECT count(*) = 0 FROM twin.unit_twin WHERE is_stale",
                       time.monotonic())
        started = time.monotonic()
        advance(sources, 1)
        seconds = wait_published(data / "warehouse.duckdb", f"""SELECT
            max(last_telemetry_at) > TIMESTAMPTZ '{before.isoformat()}' AND count(*) FILTER (WHERE is_stale) = 0
            FROM twin.unit_twin""", started)
    finally:
        server.stop()
    say(f"default enterprise, thread serve: advance 1 day -> every twin published in {seconds:.1f} s")
    return {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "advance_1_day_to_every_twin_published_s": round(seconds, 1), "machine": machine()}


def _copy(sources: Path, data: Path, into: Path) -> tuple[Path, Path]:
    shutil.rmtree(into, ignore_errors=True)
    shutil.copytree(sources, into / "sources")
    shutil.copytree(data, into / "data", ignore=shutil.ignore_patterns("dagster_home"))
    return into / "sources", into / "data"


BENCH_ECO = "ECO-BENCH"


def scenario_eco(sources: Path, data: Path, share: float = 0.01, narrow: bool = False) -> tuple[list[str], int]:
    """Append a released retrofit ECO on a part revision held by about `share` of the fleet
    (whose part other units may hold at other revisions: the ECO's impact reaches every unit that
    uses the part, see units_reached); `narrow`: on a part only about `share` of the fleet uses at
    all, at the revision most of them hold."""
    return eco_target(sources, data, share, narrow)()


def eco_target(sources: Path, data: Path, share: float = 0.01, narrow: bool = False):
    """The bench ECO's part and revision, chosen from the warehouse (1.5 s at 10,000 units): a
    function that releases it (PLM's export files written) and returns scenario_eco's answer."""
    wh = data / "warehouse.duckdb"
    con = duckdb.connect(str(wh), read_only=True)
    fleet = con.execute("SELECT count(*) FROM twin.unit_twin").fetchone()[0]
    if narrow:
        (used,) = con.execute("""
            SELECT c.part_number FROM thread.unit_configuration c JOIN twin.unit_twin t USING (serial_number)
            WHERE c.part_number <> t.product_part_number
            GROUP BY 1 ORDER BY abs(count(DISTINCT c.serial_number) - ?), 1 LIMIT 1""", [share * fleet]).fetchone()
        part, rev, holders = con.execute("""
            SELECT c.part_number, c.revision, count(DISTINCT c.serial_number) AS n
            FROM thread.unit_configuration c JOIN twin.unit_twin t USING (serial_number)
            WHERE c.part_number = ? GROUP BY 1, 2 ORDER BY n DESC, 2 LIMIT 1""", [used]).fetchone()
    else:
        part, rev, holders = con.execute("""
            SELECT c.part_number, c.revision, count(DISTINCT c.serial_number) AS n
            FROM thread.unit_configuration c JOIN twin.unit_twin t USING (serial_number)
            GROUP BY 1, 2 ORDER BY abs(n - ?), 1 LIMIT 1""", [share * fleet]).fetchone()
    revs = [r for (r,) in con.execute("SELECT revision FROM thread.part_revisions WHERE part_number = ?", [part]).fetchall()]
    con.close()

    def release() -> tuple[list[str], int]:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        later = (datetime.now(timezone.utc) + timedelta(days=365)).strftime("%Y-%m-%d")
        changed = release_eco(sources, BENCH_ECO, part, rev, max(revs) + "X", now, later, "retrofit",
                              title="Bench retrofit")
        return changed, holders

    return release


def scenario_retrofit(sources: Path, data: Path) -> tuple[list[str], int]:
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    serial, part, rev = con.execute("""
        SELECT c.serial_number, c.part_number, c.revision FROM thread.unit_configuration c
        JOIN twin.unit_twin t USING (serial_number) WHERE t.status = 'shipped' ORDER BY 1, 2 LIMIT 1""").fetchone()
    con.close()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {"event_id": "SE-BENCH-1", "serial_number": serial, "event_type": "retrofit", "occurred_at": now,
             "closed_at": now, "removed_part_number": part, "removed_revision": rev,
             "installed_part_number": part, "installed_revision": rev, "installed_component_serial": "BENCH-1"}
    with (sources / "service" / "service_events.jsonl").open("a") as f:
        f.write(json.dumps(event) + "\n")
    return ["service/service_events"], 1


def queries(warehouse: Path, runs: int = 20, seed: int = 1) -> dict:
    from orchestration.ask import ask

    rng = random.Random(seed)
    con = duckdb.connect(str(warehouse), read_only=True)
    parts = [r for (r,) in con.execute("SELECT DISTINCT part_number FROM thread.unit_configuration").fetchall()]
    serials = [r for (r,) in con.execute("SELECT serial_number FROM twin.unit_twin").fetchall()]
    ecos = [r for (r,) in con.execute("SELECT eco_number FROM thread.eco_propagation").fetchall()]
    lots = con.execute("SELECT component_serial, part_number FROM thread.unit_component_serials "
                       "USING SAMPLE 200 ROWS (reservoir, 1)").fetchall()
    latest = con.execute("SELECT max(valid_from) FROM twin.unit_twin_history").fetchone()[0]
    con.close()

    def as_of() -> dict:  # after the last publish: every twin has a state then
        return {"as_of": (latest + timedelta(hours=rng.random())).isoformat()}

    def investigation() -> tuple:
        lot, part = rng.choice(lots)
        return (part, {"lot": lot}) if rng.random() < 0.5 else (part, {})

    plans = {
        "units-with": lambda: rng.choice(parts), "where-used": lambda: rng.choice(parts),
        "eco-impact": lambda: rng.choice(ecos), "eco-gaps": lambda: None, "trace": lambda: rng.choice(serials),
        "twin": lambda: rng.choice(serials), "reliability": lambda: rng.choice([None, rng.choice(parts)]),
        "carriers": lambda: rng.choice(lots)[0], "investigate": investigation,
        "twin --as-of": lambda: (rng.choice(serials), as_of()), "twin-changes": lambda: rng.choice(serials),
    }
    per, every = {}, []
    for name, arg in plans.items():
        times = []
        for _ in range(runs):
            argument = arg()
            argument, options = argument if isinstance(argument, tuple) else (argument, {})
            started = time.perf_counter()
            ask(warehouse, name.split()[0], argument, **options)
            times.append((time.perf_counter() - started) * 1000)
        per[name] = {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(_p95(times), 1)}
        every += times
    return {"p50_ms": round(statistics.median(every), 1), "p95_ms": round(_p95(every), 1), "per_question": per}


def aas_api(data: Path, log: Path, runs: int = 50, seed: int = 1) -> dict:
    """`thread api` as an AAS repository, over HTTP on loopback: a page of 100 shells from a random
    serial, and one submodel by id per kind, each of a different unit (so never from the API's cache
    of built submodels): p50 and p95 of the whole answer, and its size."""
    import urllib.request

    from orchestration import aas
    from orchestration.aas_api import b64encode as b64

    rng = random.Random(seed)
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    serials = [r for (r,) in con.execute("SELECT serial_number FROM twin.unit_twin ORDER BY 1").fetchall()]
    con.close()
    api = Api(data, log)
    try:
        api.wait_ready()
        plans = {"shells page of 100": lambda u: f"/shells?limit=100&cursor={b64(u)}"}
        plans |= {f"submodel {kind}": (lambda k: lambda u: f"/submodels/{b64(aas.submodel_id(k, u))}")(kind)
                  for kind in aas.SUBMODELS}
        out = {}
        for name, path in plans.items():
            times, size = [], 0
            for unit in rng.sample(serials, min(runs, len(serials))):
                started = time.perf_counter()
                with urllib.request.urlopen(api.url + path(unit), timeout=120) as r:
                    size = max(size, len(r.read()))
                times.append((time.perf_counter() - started) * 1000)
            out[name] = {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(_p95(times), 1),
                         "largest_kb": round(size / 1024, 1)}
        return out
    finally:
        api.stop()


def add_aas_api(scale: str, workdir: Path, results_dir: Path, readme: Path) -> Path:
    """`--api-only`: the AAS API's latencies on the data the last full run at `scale` built, added to
    that run's results (with their own date: the build's figures stay the build's)."""
    data = workdir / "data"
    if not (data / "warehouse.duckdb").exists():
        raise SystemExit(f"no built data in {data}: run `python -m bench --scale {scale}` first")
    path = results_dir / f"{scale}.json"
    result = json.loads(path.read_text())
    result["aas_api"] = aas_api(data, workdir / "aas-api.log")
    result["aas_api_measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    path.write_text(json.dumps(result, indent=2) + "\n")
    readme.write_text(with_targets(readme.read_text(), results_dir))
    return path


def cli_startup(data: Path, runs: int = 5) -> dict:
    """Wall time of the `thread` command as an analyst runs it, process start included: its help,
    and a question on this warehouse."""
    import subprocess
    import sys

    thread = str(Path(sys.executable).parent / "thread")
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        serial = con.execute("SELECT min(serial_number) FROM twin.unit_twin").fetchone()[0]
    env = {**os.environ, "THREAD_DATA_DIR": str(data)}

    def median(*args: str) -> float:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([thread, *args], env=env, capture_output=True, check=True)
            times.append(time.perf_counter() - started)
        return round(statistics.median(times), 2)

    return {"help_s": median("--help"), "ask_twin_s": median("ask", "twin", serial)}


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "cpu": cpu,
            "python": platform.python_version()}


def versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("dagster", "dagster-dbt", "dbt-core", "dbt-duckdb", "duckdb", "deltalake",
                                    "pandera", "pandas", "pyarrow")}


def run(scale: str, seed: int, cache: Path, workdir: Path, say=print, incremental_scenarios: bool = True,
        live_scenarios: bool = False, only: set[str] | None = None, units_per_partition: int | None = None) -> dict:
    per_partition = units_per_partition or 0  # 0: the product's choice (twins.units_per_partition)
    # Every scale runs with the product's memory limit and dbt threads (unless the environment sets
    # them): a first build builds the per-unit models 10,000 units at a time, so L's largest
    # statements need no more memory than M's (before that, L needed 10 GB and one dbt thread).
    sources, simulate_s = enterprise(scale, seed, cache)
    say(f"enterprise {scale}: {sources} (simulated in {simulate_s:.0f} s)")
    floor_s, source_rows = floor(sources)
    say(f"floor: {floor_s:.1f} s for {source_rows:,} source rows")
    data = workdir / "data"
    shutil.rmtree(workdir, ignore_errors=True)
    data.mkdir(parents=True)
    with PeakMemory() as mem, _instance(sources, data) as instance:
        started = time.monotonic()
        mem.take_window()
        stages, result = full_build(sources, data, instance, mem, per_partition)
        full_s = time.monotonic() - started
        partition_keys = list(instance.get_dynamic_partitions("units"))
    assert result.ok, result.failed
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    counts = dict(con.execute("""SELECT 'thread', sum(estimated_size) FROM duckdb_tables() WHERE schema_name = 'thread'
                                 UNION ALL SELECT 'twin', sum(estimated_size) FROM duckdb_tables() WHERE schema_name = 'twin'
                              """).fetchall())
    units = con.execute("SELECT count(*) FROM thread.units").fetchone()[0]
    twins = con.execute("SELECT count(*) FROM twin.unit_twin").fetchone()[0]
    con.close()
    telemetry_rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{sources}/service/telemetry/*.parquet')").fetchone()[0]
    stages["extract"].rows = source_rows
    stages.setdefault("thread", Stage()).rows = int(counts.get("thread") or 0)
    stages.setdefault("twins", Stage()).rows = twins
    stages.setdefault("publish", Stage()).rows = int((counts.get("thread") or 0) + (counts.get("twin") or 0))
    say(f"full build: {full_s:.1f} s, peak {mem.mb:,.0f} MB; "
        + ", ".join(f"{k} {v.seconds:.1f} s ({v.peak_mb:,.0f} MB)" for k, v in stages.items()))

    incremental = {"eco": {"seconds": None, "over_full": None, "twins_refreshed": None, "twins_affected": None}}
    scenarios = (("eco", lambda s, d: scenario_eco(s, d)), ("eco_narrow", lambda s, d: scenario_eco(s, d, narrow=True)),
                 ("telemetry_day", lambda s, d: telemetry_day(s)),
                 ("retrofit", lambda s, d: scenario_retrofit(s, d)), ("unchanged", lambda s, d: ([], 0)))
    for name, make in scenarios if incremental_scenarios else ():
        if only and name not in only:
            continue
        s_dir, d_dir = _copy(sources, data, workdir / f"incremental-{name}")
        changed, affected = make(s_dir, d_dir)
        if name == "unchanged":
            # `thread build` on the same sources: every extraction checks, nothing else runs.
            with _instance(s_dir, d_dir) as inst:
                started = time.monotonic()
                unchanged_stages, again = full_build(s_dir, d_dir, inst, units_per_partition=per_partition)
                seconds = time.monotonic() - started
            assert again.ok, again.failed
            incremental[name] = {"seconds": round(seconds, 2), "over_full": round(seconds / full_s, 4),
                                 "twins_refreshed": 0, "twins_affected": 0,
                                 "stages_s": {k: round(v.seconds, 2) for k, v in unchanged_stages.items()}}
            say(f"unchanged sources: {seconds:.1f} s ({seconds / full_s:.3f} of full)")
            shutil.rmtree(workdir / f"incremental-{name}", ignore_errors=True)
            continue
        with _instance(s_dir, d_dir) as inst:
            # The copy has no Dagster history: register the partitions the full build made.
            inst.add_dynamic_partitions("units", partition_keys)
            out = refresh(changed, s_dir, d_dir, inst, per_partition)
        incremental[name] = {"seconds": round(out["seconds"], 2), "over_full": round(out["seconds"] / full_s, 4),
                             "twins_refreshed": out["refreshed"], "twins_affected": affected,
                             "steps_s": out["steps_s"]}
        if name.startswith("eco"):  # the units whose thread rows the ECO changes (its eco_impact rows)
            con = duckdb.connect(str(d_dir / "warehouse.duckdb"), read_only=True)
            incremental[name]["units_reached"] = con.execute(
                "SELECT count(DISTINCT serial_number) FROM thread.eco_impact WHERE eco_number = ?",
                [BENCH_ECO]).fetchone()[0]
            con.close()
        say(f"incremental {name}: {out['seconds']:.1f} s ({out['seconds'] / full_s:.3f} of full), "
            f"{out['refreshed']} twins refreshed, {affected} affected")
        shutil.rmtree(workdir / f"incremental-{name}", ignore_errors=True)
    live = {}
    if live_scenarios:
        s_dir, d_dir = _copy(sources, data, workdir / "live")
        published, received = live_eco(s_dir, d_dir, workdir / "live", per_partition)
        live["eco_file_to_published_twin_s"] = published
        live["eco_file_to_event_received_s"] = received
        say(f"live: ECO file change -> published twins {published:.1f} s, -> first event at a client of "
            f"`thread api` {received if received is None else round(received, 1)} s")
        shutil.rmtree(workdir / "live", ignore_errors=True)
    q = queries(data / "warehouse.duckdb")
    say(f"queries: p50 {q['p50_ms']} ms, p95 {q['p95_ms']} ms")
    cli = cli_startup(data)
    say(f"the thread command: --help {cli['help_s']} s, ask twin {cli['ask_twin_s']} s (median of 5)")
    api = aas_api(data, workdir / "aas-api.log")
    say("thread api (AAS): " + ", ".join(f"{k} p95 {v['p95_ms']} ms" for k, v in api.items()))
    stage_seconds = {k: round(v.seconds, 2) for k, v in stages.items()}
    stage_seconds["simulate"] = round(simulate_s, 2)
    return {
        "scale": scale,
        "seed": seed,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "units": units,
        "twins": twins,
        "telemetry_rows": telemetry_rows,
        "source_rows": source_rows,
        "full_build_s": round(full_s, 2),
        "floor_s": round(floor_s, 2),
        "full_over_floor": round(full_s / floor_s, 2),
        "eco_incremental_s": incremental["eco"]["seconds"],
        "eco_incremental_over_full": incremental["eco"]["over_full"],
        "twins_refreshed": incremental["eco"]["twins_refreshed"],
        "twins_affected": incremental["eco"]["twins_affected"],
        "incremental": incremental,
        "unchanged_over_full": incremental.get("unchanged", {}).get("over_full"),
        "telemetry_day_over_full": incremental.get("telemetry_day", {}).get("over_full"),
        "live": live,
        "query_p50_ms": q["p50_ms"],
        "query_p95_ms": q["p95_ms"],
        "queries": q["per_question"],
        "cli_startup_s": cli,
        "aas_api": api,
        "peak_rss_mb": mem.mb,
        "twin_units_per_partition": key_size(partition_keys[-1]),
        "twin_partitions": len(partition_keys),
        "dagster_storage": DAGSTER_STORAGE,
        "stages": stage_seconds,
        "stage_peak_rss_mb": {k: v.peak_mb for k, v in stages.items() if v.peak_mb},
        "rows_per_second": {k: round(v.rows / v.seconds) if v.seconds else None for k, v in stages.items()},
        "machine": machine(),
        "versions": versions(),
    }


def write(result: dict, results_dir: Path, readme: Path) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{result['scale']}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    inc = result.get("incremental", {})

    def share(name: str) -> str:
        x = inc.get(name) or {}
        return f"{x['over_full']:.3f}" if x.get("over_full") is not None else "—"

    eco = inc.get("eco") or {}
    live = (result.get("live") or {}).get("eco_file_to_published_twin_s")
    row = (f"| {result['measured_at'][:10]} | {result['scale']} | {result['units']:,} | {result['telemetry_rows']:,} | "
           f"{result['full_build_s']:.0f} | {result['floor_s']:.1f} | {result['full_over_floor']:.1f} | "
           f"{share('eco')} | {eco.get('twins_refreshed', '—')}/{eco.get('twins_affected', '—')} | "
           f"{share('unchanged')} | {share('telemetry_day')} | {share('retrofit')} | "
           f"{f'{live:.1f}' if live is not None else '—'} | "
           f"{result['query_p50_ms']:.0f} | {result['query_p95_ms']:.0f} | {result['peak_rss_mb']:,.0f} |")
    # The results table closes bench/README.md: a new run is a new last row.
    text = readme.read_text().rstrip("\n") + "\n" + row + "\n"
    readme.write_text(with_targets(text, results_dir))
    return path


def run_rul(workdir: Path, bench_dir: Path, say=print) -> Path:
    """C-MAPSS FD001 through the whole pipeline: the thread trains its RUL model from the engines'
    recorded failures; report the held-out RMSE and PHM08 score the model version carries."""
    import dagster as dg

    from orchestration import rul
    from orchestration.simulate import cmapss

    shutil.rmtree(workdir, ignore_errors=True)
    sources, data = workdir / "sources", workdir / "data"
    cmapss.write(sources)
    started = time.monotonic()
    with dg.DagsterInstance.ephemeral() as instance:
        stages, result = full_build(sources, data, instance)
    assert result.ok, result.failed
    row = rul.latest_versions(data / "lake")[cmapss.PRODUCT]
    out = {
        "dataset": "C-MAPSS FD001 training set (100 engines, 20,631 cycles)",
        "protocol": (f"split by engine: {int(row['held_out_units'])} held out; each cut at {rul.CUTS_PER_UNIT} random "
                     "points of its last 150 cycles and predicted there; truth = cycles to failure (uncapped)"),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_version": row["version"], "rmse_hours": round(float(row["rmse_hours"]), 2),
        "phm08_score": round(float(row["phm08_score"]), 1), "train_seconds": float(row["train_seconds"]),
        "training_units": int(row["training_units"]), "training_rows": int(row["training_rows"]),
        "cap_hours": float(row["cap_hours"]), "pipeline_build_s": round(time.monotonic() - started, 1),
        "published_results_rmse": {"CNN (Babu et al., 2016)": 18.45, "LSTM (Zheng et al., 2017)": 16.14,
                                   "deep CNN (Li et al., 2018)": 12.61},
        "machine": machine(), "versions": versions(),
    }
    path = bench_dir / "results" / "rul_FD001.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    say(f"RUL on FD001: RMSE {out['rmse_hours']} cycles, PHM08 score {out['phm08_score']}, "
        f"trained in {out['train_seconds']} s")
    return path


def _load(results_dir: Path, scale: str) -> dict | None:
    path = Path(results_dir) / f"{scale}.json"
    return json.loads(path.read_text()) if path.exists() else None


def targets_table(results_dir: Path) -> str:
    """Each target (issue 17's) beside the latest committed figure it is judged on."""
    m, big = _load(results_dir, "M"), _load(results_dir, "L")
    default = _load(results_dir, "live_default")

    def verdict(ok: bool | None) -> str:
        return "—" if ok is None else ("met" if ok else "**missed**")

    def share(run: dict | None, name: str, limit: float, scale: str) -> tuple:
        inc = (run or {}).get("incremental", {}).get(name) or {}
        if inc.get("over_full") is None:
            return ("not run", verdict(None))
        eco = name.startswith("eco")
        extra = f", twins {inc['twins_refreshed']}/{inc['twins_affected']}" if eco else ""
        if inc.get("units_reached") is not None:
            extra += f", its impact reaches {inc['units_reached']:,} units"
        ok = inc["over_full"] <= limit and (not eco or inc["twins_refreshed"] == inc["twins_affected"])
        return (f"{inc['over_full']:.3f} ({inc['seconds']:.0f} s at {scale}{extra})", verdict(ok))

    rows = [
        ("M: ECO on 1 % of units ÷ full build", "≤ 0.05, only the affected twins", *share(m, "eco", 0.05, "M")),
        ("M: ECO on a part 1 % of units use ÷ full build", "≤ 0.05, only the affected twins",
         *share(m, "eco_narrow", 0.05, "M")),
        ("M: build on unchanged sources ÷ full build", "≤ 0.05", *share(m, "unchanged", 0.05, "M")),
        ("M: one more day of telemetry ÷ full build", "≤ 0.20", *share(m, "telemetry_day", 0.20, "M")),
    ]
    live = (m or {}).get("live", {}).get("eco_file_to_published_twin_s")
    rows.append(("M: ECO file change → published twin, `thread serve` running", "≤ 10 s",
                 f"{live:.1f} s" if live is not None else "not run", verdict(None if live is None else live <= 10)))
    event = (m or {}).get("live", {}).get("eco_file_to_event_received_s")
    if event is not None:
        rows.append(("M: ECO file change → change event at a `thread api` client", "measured (issue 19)",
                     f"{event:.1f} s", "—"))
    if m:
        rows.append(("M: full build ÷ scan floor", "≤ 10", f"{m['full_over_floor']:.1f} ({m['full_build_s']:.0f} s ÷ "
                     f"{m['floor_s']:.1f} s)", verdict(m["full_over_floor"] <= 10)))
        rows.append(("analyst question p95 at M", "≤ 200 ms", f"{m['query_p95_ms']:.0f} ms",
                     verdict(m["query_p95_ms"] <= 200)))
    for scale, run in (("M", m), ("L", big)):
        for name, figures in ((run or {}).get("aas_api") or {}).items():
            rows.append((f"{scale}: `thread api` (AAS), {name}", "p95 ≤ 100 ms (issue 19)",
                         f"{figures['p95_ms']:.0f} ms ({figures['largest_kb']:,.0f} KB)",
                         verdict(figures["p95_ms"] <= 100)))
    if big:
        when = big["measured_at"][:10]
        rows.append(("L: full build peak memory", "≤ 8 GiB", f"{big['peak_rss_mb'] / 1024:.1f} GiB "
                     f"({big['full_build_s']:.0f} s, measured {when})", verdict(big["peak_rss_mb"] <= 8 * 1024)))
        storage = {run.get("dagster_storage", "in memory") for run in (m or {}, big)}
        if m and m["measured_at"][:10] == when and len(storage) == 1:
            growth = big["full_build_s"] / m["full_build_s"]
            rows.append(("L: cost growth M → L", "≤ 11× for 10× the data",
                         f"{growth:.1f}× ({big['source_rows'] / m['source_rows']:.1f}× the source rows)",
                         verdict(growth <= 11)))
        elif m:  # seconds from different days (code, machine load) or Dagster storages are not a ratio
            rows.append(("L: cost growth M → L", "≤ 11× for 10× the data",
                         f"not comparable: L measured {when} with Dagster's events "
                         f"{big.get('dagster_storage', 'in memory')}, M {m['measured_at'][:10]} "
                         f"{m.get('dagster_storage', 'in memory')}", verdict(None)))
        rows.append(("L: ECO incremental ÷ full build", "≤ 0.05", *share(big, "eco", 0.05, "L")))
    else:
        rows.append(("L: full build peak memory", "≤ 8 GiB", "no completed run", "**missed**"))
    seconds = (default or {}).get("advance_1_day_to_every_twin_published_s")
    rows.append(("default enterprise, `thread serve`: advance 1 day → every twin published", "≤ 60 s",
                 f"{seconds:.0f} s" if seconds is not None else "not run",
                 verdict(None if seconds is None else seconds <= 60)))
    lines = ["| figure | target | latest | |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def with_targets(text: str, results_dir: Path) -> str:
    """bench/README.md with its "Latest against the targets" section regenerated from the JSON."""
    head, sep, tail = text.partition(TARGETS_START)
    if sep:
        _, _, tail = tail.partition(TARGETS_END)
    else:
        head, sep, tail = text.partition("## Results")
        tail = sep + tail
    return head + TARGETS_START + "\n" + targets_table(results_dir) + "\n" + TARGETS_END + "\n\n" + tail.lstrip("\n")


TARGETS_START = "<!-- targets: generated by thread bench from bench/results/*.json -->"
TARGETS_END = "<!-- /targets -->"


def run_dagster_events(bench_dir: Path, partitions: int = 1_000, say=print) -> Path:
    """What Dagster's bookkeeping of one run over `partitions` unit partitions costs (a one-step
    asset doing nothing), per storage: in memory, SQLite on disk as Dagster uses it and as `thread
    build` and `thread serve` do (its connections kept), PostgreSQL (a team's; Debian's server,
    started here with fsync off as in the tests); each one planned event per partition, one for
    the whole range, and that with batched writes (results/dagster_events.json)."""
    import tempfile

    import dagster as dg

    from orchestration.settings import sqlalchemy_pg_url
    from tests.helpers import start_postgres, stop_postgres

    units = dg.DynamicPartitionsDefinition(name="units")

    @dg.asset(partitions_def=units)
    def twin(context):
        return dg.MaterializeResult(metadata={"units": len(context.partition_keys)})

    keys = [f"HX200-{i:06d}" for i in range(partitions)]
    modes = {"planned per partition": {}, "planned per run": {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true"},
             "planned per run, batched writes": {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
                                                 "DAGSTER_EVENT_BATCH_SIZE": "500"}}
    out: dict = {"measured_at": _now(), "partitions": partitions, "seconds": {}}
    root = Path(tempfile.mkdtemp(prefix="bench-dagster-events-"))
    pg_url, pg = start_postgres(root)
    try:
        # Last, since it cannot be undone in this process: SQLite as `thread build` and `thread
        # serve` use it (services.storage_asked_less: connections kept, not one per event).
        for storage in ("in memory", "sqlite on disk", "postgresql", KEPT_SQLITE):
            if storage == KEPT_SQLITE:
                from orchestration import services

                services.storage_asked_less()
            for mode, env in modes.items():
                home = root / re.sub(r"[^A-Za-z0-9]+", "-", f"{storage}-{len(env)}")
                home.mkdir()
                config = "telemetry:\n  enabled: false\n"
                if storage == "postgresql":
                    config += f"storage:\n  postgres:\n    postgres_url: {sqlalchemy_pg_url(pg_url)}\n"
                (home / "dagster.yaml").write_text(config)
                saved = {k: os.environ.pop(k, None) for k in modes["planned per run, batched writes"]}
                os.environ.update(env)
                try:
                    with (dg.DagsterInstance.ephemeral() if storage == "in memory"
                          else dg.DagsterInstance.from_config(str(home))) as instance:
                        instance.wipe()  # PostgreSQL: one database for the three modes
                        instance.add_dynamic_partitions(units.name, keys)
                        started = time.monotonic()
                        dg.materialize([twin], instance=instance, tags={
                            "dagster/asset_partition_range_start": keys[0],
                            "dagster/asset_partition_range_end": keys[-1]})
                        seconds = round(time.monotonic() - started, 2)
                finally:
                    for k, v in saved.items():
                        os.environ.pop(k, None)
                        if v is not None:
                            os.environ[k] = v
                out["seconds"].setdefault(storage, {})[mode] = seconds
                say(f"{storage}, {mode}: {seconds:.1f} s for {partitions:,} partitions")
    finally:
        stop_postgres(pg)
        shutil.rmtree(root, ignore_errors=True)
    out["machine"], out["versions"] = machine(), versions()
    path = bench_dir / "results" / "dagster_events.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    return path


def run_quarantine(bench_dir: Path, rows: int = 1_000_000, say=print) -> Path:
    """Quarantining a million rows: one telemetry export whose every row repeats the first (the
    contract keeps one, rejects the rest with reason and record). Linear: seconds, not hours."""
    import pandas as pd

    import contracts

    c = contracts.entity("service", "telemetry")
    out = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "runs": []}
    for n in (rows // 10, rows // 2, rows):
        frame = pd.DataFrame({"serial_number": ["HX200-000001"] * n, "ts": pd.Timestamp("2026-01-01", tz="UTC"),
                              "sensor": "temp_c", "value": 71.5})
        started = time.perf_counter()
        result = contracts.enforce(frame, c, "service/telemetry/bench.parquet")
        seconds = time.perf_counter() - started
        assert len(result.rejected) == n - 1 and len(result.accepted) == 1
        out["runs"].append({"rows": n, "quarantined": n - 1, "seconds": round(seconds, 2),
                            "rows_per_second": round(n / seconds)})
        say(f"quarantine {n:,} duplicate rows: {seconds:.1f} s")
    out["machine"], out["versions"] = machine(), versions()
    path = bench_dir / "results" / "quarantine.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    return path


def run_engines(scale: str, seed: int, cache: Path, workdir: Path, masters: list[str], results_dir: Path,
                say=print) -> Path:
    """`--engine spark`: the full build on DuckDB and on Spark with each master (local[n]: one
    executor with n cores), same enterprise, same run; the dbt stage is where the engines differ
    (extraction, twins and publish are the same code on both). Adds the scale's figures to
    results/engines.json and extrapolates each engine to 1,000,000 units from its growth S -> M."""
    import dagster as dg

    sources, _ = enterprise(scale, seed, cache)
    runs = {}
    for engine, master in [("duckdb", None), *(("spark", m) for m in masters)]:
        name = engine if master is None else f"spark {master}"
        os.environ["THREAD_ENGINE"] = engine
        if master:
            os.environ["THREAD_SPARK_MASTER"] = master
        data = workdir / "engines" / re.sub(r"[^A-Za-z0-9]+", "_", name)
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        with PeakMemory() as mem, dg.DagsterInstance.ephemeral() as instance:
            started = time.monotonic()
            stages, result = full_build(sources, data, instance, mem)
            seconds = time.monotonic() - started
        assert result.ok, result.failed
        runs[name] = {"full_build_s": round(seconds, 1), "thread_s": round(stages["thread"].seconds, 1),
                      "peak_rss_mb": round(mem.mb), "stages_s": {k: round(v.seconds, 1) for k, v in stages.items()}}
        say(f"{scale} {name}: full build {seconds:.0f} s, thread (dbt) {stages['thread'].seconds:.0f} s, "
            f"peak {mem.mb:,.0f} MB")
        shutil.rmtree(data, ignore_errors=True)
    os.environ.pop("THREAD_ENGINE", None)
    path = results_dir / "engines.json"
    out = json.loads(path.read_text()) if path.exists() else {}
    out.setdefault("scales", {})[scale] = {"units": SCALES[scale]["units"], "measured_at": _now(), "runs": runs}
    out["machine"], out["versions"] = machine(), {**versions(), **_spark_versions()}
    out["extrapolated_1m_units_thread_s"] = _extrapolate(out["scales"])
    path.write_text(json.dumps(out, indent=2) + "\n")
    return path


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _spark_versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("pyspark", "dbt-spark")}


def _extrapolate(scales: dict) -> dict:
    """The dbt stage at 1,000,000 units per engine, from its growth between the two largest
    scales measured (t grows as units**b)."""
    import math

    measured = sorted(scales.values(), key=lambda s: s["units"])
    if len(measured) < 2:
        return {}
    small, large = measured[-2], measured[-1]
    out = {}
    for name, run in large["runs"].items():
        if name in small["runs"]:
            b = math.log(run["thread_s"] / small["runs"][name]["thread_s"]) / math.log(large["units"] / small["units"])
            out[name] = {"exponent": round(b, 2),
                         "seconds": round(run["thread_s"] * (1_000_000 / large["units"]) ** b)}
    return out
