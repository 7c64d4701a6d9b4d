"""Helpers the tests share: building enterprises, running `thread` as a real process, reading
what a build published, editing sources the way engineering and service would, and the servers
the end-to-end tests start. Fixtures live in the conftest files and use these; nothing here is a
fixture, and no test imports a conftest.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestration import faults, lake
from orchestration.cli import stop_process_group
from orchestration.settings import DAGSTER_ENV, ThreadSettings
from orchestration.simulate import SimConfig
from orchestration.simulate.changes import release_eco as write_eco

SMALL = SimConfig(seed=7, units=60, parts=120, start=date(2026, 1, 5), days=150, telemetry_every_h=12)
TINY = SimConfig(seed=11, units=25, parts=80, start=date(2026, 1, 5), days=60, telemetry_every_h=24)
THREAD = str(Path(sys.executable).parent / "thread")
# Columns that say when something ran, not what the data is.
VOLATILE = {"refreshed_at", "detected_at"}
# Tables that record the way a warehouse got here, not what it answers: the twin history has a
# state per publish and the model catalogue a version per retraining, so a sequence of refreshes
# has more of them than one build from scratch.
PATH_DEPENDENT = {"twin.unit_twin_history", "twin.twin_change_events", "twin.rul_models"}
SALT = "reliability-salt-7f3a"


# -- in-process builds ----------------------------------------------------------------------------


def thread_env(mp: pytest.MonkeyPatch, sources: Path, data: Path) -> ThreadSettings:
    """The environment `thread` would set up for these sources and data; its settings."""
    mp.delenv("DAGSTER_HOME", raising=False)
    mp.setenv("THREAD_SOURCES_DIR", str(sources))
    mp.setenv("THREAD_DATA_DIR", str(data))
    mp.setenv("MES_DATABASE_URL", "")
    mp.setenv("THREAD_PII_SALT", "test-salt")
    mp.delenv("THREAD_TWIN_UNITS_PER_PARTITION", raising=False)  # the product's choice by fleet size
    for name, value in DAGSTER_ENV.items():
        mp.setenv(name, value)
    return ThreadSettings.from_env()


def build(sources: Path, data: Path, **env: str):
    """The whole graph through Dagster, as `thread build` runs it, on an ephemeral instance (`env`:
    more THREAD_* variables, e.g. THREAD_ENGINE)."""
    from orchestration.build import run_build
    from orchestration.definitions import defs

    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        settings = thread_env(mp, sources, data)
        with dg.DagsterInstance.ephemeral() as instance:
            return run_build(defs, instance, settings)


def query(warehouse: Path, sql: str, params=None):
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def copy_built(sources: Path, data: Path, dest: Path) -> tuple[Path, Path]:
    """A private copy of built sources and data (every path inside them is relative)."""
    shutil.copytree(sources, dest / "sources")
    shutil.copytree(data, dest / "data")
    return dest / "sources", dest / "data"


def start_from(tiny_built, dest: Path) -> tuple[Path, Path]:
    """A private copy of the tiny enterprise as its first build left it (Dagster history included)."""
    return copy_built(tiny_built[0], tiny_built[1], dest)


# -- `thread` as a real process --------------------------------------------------------------------


def env_for(sources: Path, data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THREAD_", "DAGSTER_", "MES_"))}
    env.update({"THREAD_SOURCES_DIR": str(sources), "THREAD_DATA_DIR": str(data), "MES_DATABASE_URL": "",
                "THREAD_PII_SALT": SALT,
                "DAGSTER_HOME": str(data / "dagster")})
    (data / "dagster").mkdir(parents=True, exist_ok=True)
    env.update(extra)
    return env


def thread(args: list[str], sources: Path, data: Path, timeout: float = 600, **extra: str):
    return subprocess.run([THREAD, *args], env=env_for(sources, data, **extra), capture_output=True, text=True,
                          timeout=timeout)


def build_ok(sources: Path, data: Path, **extra: str) -> subprocess.CompletedProcess:
    done = thread(["build"], sources, data, **extra)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def start_paused(point: str, sources: Path, data: Path, marker: Path) -> subprocess.Popen:
    """`thread build` in its own process group, stopped at `point` (see orchestration.faults)."""
    marker.unlink(missing_ok=True)
    env = env_for(sources, data, **{faults.PAUSE_AT: point, faults.MARKER: str(marker)})
    proc = subprocess.Popen([THREAD, "build"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the build never reached {point}:\n{proc.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            kill(proc)
            raise AssertionError(f"timed out waiting for {point}")
        time.sleep(0.1)
    return proc


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the whole build: the CLI and whatever it started (dbt)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()


# -- what a build left -----------------------------------------------------------------------------


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def delta_tables(lake_dir: Path) -> list[Path]:
    return sorted(p.parent for p in Path(lake_dir).rglob("_delta_log"))


def read_every_delta_table(lake_dir: Path) -> dict[str, int]:
    """Open and fully read every Delta table; a torn one raises."""
    return {str(p.relative_to(lake_dir)): lake.read(p).num_rows for p in delta_tables(lake_dir)}


def published(warehouse: Path) -> dict[str, list[tuple]]:
    """Every published table as sorted rows, without the columns that only say when it ran (and
    without the tables that record how it got here)."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables "
                             "WHERE table_schema IN ('thread', 'twin') ORDER BY 1, 2").fetchall()
        out = {}
        for schema, name in tables:
            if f"{schema}.{name}" in PATH_DEPENDENT:
                continue
            cols = [c for (c,) in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
                "ORDER BY ordinal_position", [schema, name]).fetchall() if c not in VOLATILE]
            select = ", ".join(f'"{c}"' for c in cols)
            out[f"{schema}.{name}"] = sorted(con.execute(f'SELECT {select} FROM {schema}."{name}"').fetchall(),
                                             key=repr)
        return out
    finally:
        con.close()


def raw_counts(lake_dir: Path) -> dict[str, tuple[int, int]]:
    """Rows and distinct keys of every raw and quarantine table (duplicates show as a gap)."""
    import contracts

    out = {}
    for c in contracts.ENTITIES.values():
        for layer in ("raw", "quarantine"):
            t = lake.read(Path(lake_dir) / layer / c.system / c.entity)
            if t is None:
                continue
            if layer == "raw":
                keys = {tuple(r.values()) for r in t.select(list(c.key)).to_pylist()}
            else:
                keys = {(r["source"], r["source_row"], r["rule"]) for r in
                        t.select(["source", "source_row", "rule"]).to_pylist()}
            out[f"{layer}/{c.system}/{c.entity}"] = (t.num_rows, len(keys))
    return out


# -- sources, edited as engineering and service would ---------------------------------------------


def rows(path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def horizon(sources) -> str:
    ts = [json.loads(x)["occurred_at"] for x in (sources / "service" / "service_events.jsonl").read_text().splitlines()]
    return max(ts) if ts else "2026-01-01T00:00:00Z"


def release_eco(sources, pick: int, n: int, action: str, from_serial: str | None = None) -> None:
    """Engineering releases ECO-77<n>: a new revision of a released component, effective by date
    (or from a serial number)."""
    revisions = [r for r in rows(sources / "plm" / "part_revisions.csv")
                 if r["state"] == "released" and r["part_number"].startswith("C-")]
    part = revisions[pick % len(revisions)]
    at = horizon(sources)
    new_rev = part["revision"] + "Z" * n
    eco = f"ECO-77{n:02d}"
    effective = (date.fromisoformat(at[:10]) - timedelta(days=20)).isoformat()
    if from_serial:
        write_eco(sources, eco, part["part_number"], part["revision"], new_rev, at, from_serial, action,
                  effectivity_type="serial")
    else:
        write_eco(sources, eco, part["part_number"], part["revision"], new_rev, at, effective, action)


def scrap(sources, pick: int) -> None:
    """MES scraps a unit (it moves between states: no twin any more)."""
    con = sqlite3.connect(sources / "mes" / "mes.sqlite")
    serials = [s for (s,) in con.execute("SELECT serial_number FROM units WHERE status <> 'scrapped' ORDER BY 1")]
    con.execute("UPDATE units SET status = 'scrapped' WHERE serial_number = ?", (serials[pick % len(serials)],))
    con.commit()
    con.close()


def mid_shard_serial(sources, pick: int, digits: int) -> str:
    """A serial number in the middle of a shard (not its first), to start an effectivity at."""
    con = sqlite3.connect(sources / "mes" / "mes.sqlite")
    serials = [s for (s,) in con.execute("SELECT serial_number FROM units ORDER BY 1")]
    con.close()
    middle = [s for s in serials if int(s[-digits:]) % 10**digits not in (0, 10**digits - 1)] or serials
    return middle[pick % len(middle)]


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


# -- servers ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path):
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://127.0.0.1:{port}"

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            data = json.load(r)
        assert "errors" not in data, data["errors"]
        return data["data"]


def start_server(sources: Path, data: Path, tmp: Path) -> Server:
    port = free_port()
    log = tmp / "serve.log"
    env = {**os.environ, "THREAD_SOURCES_DIR": str(sources), "THREAD_DATA_DIR": str(data),
           "MES_DATABASE_URL": "", "THREAD_PII_SALT": "test-salt"}
    env.pop("DAGSTER_HOME", None)
    thread = str(Path(sys.executable).parent / "thread")
    proc = subprocess.Popen([thread, "serve", "--port", str(port)], env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(proc, port, log)
    # Generous: on two busy cores the code server takes far longer than its idle ~6 s.
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"thread serve exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/server_info", timeout=2):
                break
        except OSError:
            time.sleep(1)
    else:
        stop_server(server)
        raise RuntimeError(f"thread serve did not answer in 240 s: {log.read_text()[-2000:]}")
    # The code location loads after the webserver answers.
    status = None
    while time.monotonic() < deadline:
        try:
            nodes = server.graphql("{ assetNodes { id } }")["assetNodes"]
            if nodes:
                return server
            status = server.graphql(LOCATION_STATUS)
        except Exception as e:  # noqa: BLE001 - not loaded yet
            status = repr(e)
        time.sleep(1)
    stop_server(server)
    raise RuntimeError(f"the code location did not load: {status}\n{log.read_text()[-3000:]}")


LOCATION_STATUS = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def stop_server(server: Server) -> None:
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()


def debian_program(program: str, package: str, where: str | None = None) -> str:
    """A program from a Debian package, installed here if missing (the test set-up is allowed to)."""
    import glob
    import shutil

    def found() -> str | None:
        in_package_dir = sorted(glob.glob(f"{where}/{program}")) if where else []
        return shutil.which(program) or (in_package_dir[-1] if in_package_dir else None)

    if found():
        return found()
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], env=env, capture_output=True)
        if found():
            return found()
    pytest.skip(f"Debian's {package} package is not installed and cannot be installed here (no apt-get or not root)")


def chromium_executable() -> str:
    return debian_program("chromium", "chromium")


def start_group(cmd: list[str], log: Path, **kwargs) -> subprocess.Popen:
    """A server in its own process group, so that stop_group stops it and all it started."""
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, **kwargs)


# The way `thread serve` stops its services: the group gets SIGTERM, then SIGKILL for what is left.
stop_group = stop_process_group


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{proc.args[0]} did not listen on {port} in {timeout} s: {log.read_text()[-2000:]}")


def start_postgres(root: Path) -> tuple[str, subprocess.Popen]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (Debian's server; run as `postgres` when we are
    root, since PostgreSQL refuses to run as root). Returns a URL of its database `dagster`."""
    import tempfile

    bin_dir = Path(debian_program("initdb", "postgresql", "/usr/lib/postgresql/*/bin")).resolve().parent
    # Outside pytest's owner-only temporary root, which the `postgres` user could not enter.
    data = Path(tempfile.mkdtemp(prefix="thread-pg-", dir="/tmp"))
    root_user = os.geteuid() == 0
    as_user = ["runuser", "-u", "postgres", "--"] if root_user else []
    if root_user:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data / "cluster"), "-A", "trust", "-U", "thread",
                    "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
    port = free_port()
    log = root / "postgres.log"
    proc = start_group([*as_user, str(bin_dir / "postgres"), "-D", str(data / "cluster"), "-p", str(port),
                        "-k", str(data), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"], log)
    proc.cluster = data  # removed by stop_postgres
    wait_for_port(port, proc, log)
    deadline = time.monotonic() + 30
    while True:  # listening is not yet accepting: the start-up may still be recovering
        done = subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "thread",
                               "dagster"], capture_output=True, text=True)
        if done.returncode == 0:
            return f"postgresql://thread@127.0.0.1:{port}/dagster", proc
        if time.monotonic() > deadline:
            raise RuntimeError(done.stderr)
        time.sleep(0.3)


def stop_postgres(proc: subprocess.Popen) -> None:
    stop_group(proc)
    shutil.rmtree(proc.cluster, ignore_errors=True)


def start_redis(root: Path) -> tuple[str, subprocess.Popen]:
    """A throwaway Redis (Debian's redis-server) on 127.0.0.1, keeping nothing on disk."""
    server = debian_program("redis-server", "redis-server")
    port = free_port()
    log = root / "redis.log"
    proc = start_group([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                        "--dir", str(root)], log)
    wait_for_port(port, proc, log)
    return f"redis://127.0.0.1:{port}/0", proc


def start_s3(root: Path, bucket: str) -> tuple[dict[str, str], subprocess.Popen]:
    """A throwaway S3 server (moto) on 127.0.0.1 with one empty bucket. Returns the standard AWS_*
    variables that point deltalake, pyarrow and s3fs at it."""
    import boto3

    port = free_port()
    log = root / "s3.log"
    proc = start_group([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log)
    wait_for_port(port, proc, log)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "thread-test", "AWS_SECRET_ACCESS_KEY": "thread-test"}
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
                 aws_access_key_id="thread-test", aws_secret_access_key="thread-test").create_bucket(Bucket=bucket)
    return env, proc


class SparkCluster:
    """A standalone Spark cluster on 127.0.0.1: a master and one worker (the pip package's Spark,
    on Debian's Java), each in its own process group."""

    def __init__(self, root: Path, cores: int = 2, memory: str = "2g"):
        import pyspark

        debian_program("java", "openjdk-17-jre-headless")
        spark_class = str(Path(pyspark.__file__).parent / "bin" / "spark-class")
        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1",
               "SPARK_LOG_DIR": str(root), "SPARK_WORKER_DIR": str(root / "work")}
        port, ui, worker_ui = free_port(), free_port(), free_port()
        self.url, self.ui = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui}"
        self.master = start_group([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                   "--port", str(port), "--webui-port", str(ui)], root / "master.log", env=env)
        self.worker = None
        try:
            wait_for_port(port, self.master, root / "master.log", timeout=120)
            self.worker = start_group([spark_class, "org.apache.spark.deploy.worker.Worker", self.url, "--host",
                                       "127.0.0.1", "--cores", str(cores), "--memory", memory, "--webui-port",
                                       str(worker_ui), "--work-dir", str(root / "work")], root / "worker.log", env=env)
            deadline = time.monotonic() + 120
            while self.alive_workers() < 1:
                if time.monotonic() > deadline or self.worker.poll() is not None:
                    raise RuntimeError(f"no Spark worker registered: {(root / 'worker.log').read_text()[-2000:]}")
                time.sleep(0.5)
        except BaseException:
            self.stop()
            raise

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.ui}/json/", timeout=5) as r:
            return json.load(r)

    def alive_workers(self) -> int:
        try:
            return sum(w["state"] == "ALIVE" for w in self.state()["workers"])
        except OSError:
            return 0

    def stop(self) -> None:
        # spark-class's shell does not pass SIGTERM on at once: a short grace, then SIGKILL (a
        # throwaway cluster has nothing to save; the 30 s default cost the suite a minute).
        for proc in (self.worker, self.master):
            if proc is not None:
                stop_group(proc, timeout=3)
