"""`thread serve` loads the same definitions in the Dagster UI, with lineage from sources to twins."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_ui_shows_lineage_from_every_source_system_to_the_twins(served):
    nodes = served.graphql("{ assetNodes { assetKey { path } groupName dependencyKeys { path } } }")["assetNodes"]
    groups = {n["groupName"] for n in nodes}
    assert {"plm", "mes", "erp", "service", "staging", "thread", "twin", "publish"} <= groups
    parents = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]} for n in nodes}

    def ancestors(key, seen=None):
        seen = set() if seen is None else seen
        for p in parents.get(key, ()):
            if p not in seen:
                seen.add(p)
                ancestors(p, seen)
        return seen

    upstream = ancestors("twin/unit_twin")
    for system in ("plm", "mes", "service"):
        assert any(a.startswith(f"{system}/") for a in upstream), system
    assert "warehouse" in {k for k, ps in parents.items() if "twin/unit_twin" in ps}


def test_ui_listens_on_loopback_only(served):
    import psutil

    root = psutil.Process(served.proc.pid)
    pids = {root.pid} | {c.pid for c in root.children(recursive=True)}
    listening = [c.laddr for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in pids]
    assert any(a.port == served.port for a in listening), listening
    assert all(_loopback(a.ip) for a in listening), listening


def test_runs_start_from_a_process_that_has_the_definitions_imported(served):
    """The code server starts runs as forks of multiprocessing's fork server, which imported the
    code location and warmed dbt when the server started (not a new interpreter importing it for
    every run)."""
    import re
    import time

    import psutil

    tree = psutil.Process(served.proc.pid).children(recursive=True)
    server = [p for p in tree if p.cmdline()[1:5] == ["-m", "orchestration.services", "api", "grpc"]]
    assert len(server) == 1, [p.cmdline() for p in tree]
    forkservers = [p for p in server[0].children() if "multiprocessing.forkserver" in " ".join(p.cmdline())]
    assert len(forkservers) == 1, [p.cmdline() for p in server[0].children()]
    assert "['orchestration.definitions', 'orchestration.warm_runs']" in " ".join(forkservers[0].cmdline())
    assert [p for p in tree if p.cmdline()[1:4] == ["-m", "orchestration.services", "dagster-daemon"]]

    launched = served.graphql(LAUNCH, {"params": {"selector": {
        "repositoryLocationName": "orchestration.definitions:defs", "repositoryName": "__repository__",
        "jobName": "build_plm"}}})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id, forked, status, deadline = launched["run"]["runId"], set(), None, time.monotonic() + 180
    while status not in ("SUCCESS", "FAILURE", "CANCELED") and time.monotonic() < deadline:
        for _ in range(25):
            forked |= {c.pid for c in forkservers[0].children()}
            time.sleep(0.02)
        status = served.graphql(RUN, {"id": run_id})["runOrError"]["status"]
    assert status == "SUCCESS"
    events = served.graphql(RUN, {"id": run_id})["runOrError"]["eventConnection"]["events"]
    messages = [e.get("message") or "" for e in events]
    pids = [int(m.group(1)) for m in map(re.compile(r"Started process for run \(pid: (\d+)\)").search, messages) if m]
    assert len(pids) == 1 and pids[0] in forked, (pids, forked)
    assert "dbt warm-up skipped" not in served.log.read_text()


LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
    ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
RUN = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status
    eventConnection { events { ... on MessageEvent { message } } } } } }"""


def _loopback(ip: str) -> bool:
    import ipaddress

    address = ipaddress.ip_address(ip)
    return address.is_loopback or bool(getattr(address, "ipv4_mapped", None) and address.ipv4_mapped.is_loopback)


def test_server_stops_cleanly(small_sources, tmp_path):
    from tests.helpers import start_server, stop_server

    server = start_server(small_sources, tmp_path / "data", tmp_path)
    stop_server(server)
    assert server.proc.returncode == 0
    import subprocess
    left = subprocess.run(["pgrep", "-g", str(server.proc.pid)], capture_output=True, text=True).stdout.split()
    assert left == []
