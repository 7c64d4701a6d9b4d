"""A real `thread serve` (Dagster webserver + daemon) on 127.0.0.1, started and stopped by the test."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import copy_built


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
    deadline = time.monotonic() + 120
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
        raise RuntimeError(f"thread serve did not answer in 120 s: {log.read_text()[-2000:]}")
    # The code location loads after the webserver answers.
    while time.monotonic() < deadline:
        try:
            nodes = server.graphql("{ assetNodes { id } }")["assetNodes"]
            if nodes:
                return server
        except Exception:  # noqa: BLE001 - not loaded yet
            pass
        time.sleep(1)
    stop_server(server)
    raise RuntimeError("the code location did not load")


def stop_server(server: Server) -> None:
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()


@pytest.fixture(scope="module")
def served(built_small, small_sources, tmp_path_factory):
    # A copy: the server's sensors and automation may write to what it serves.
    root = tmp_path_factory.mktemp("serve")
    sources, data = copy_built(small_sources, built_small, root / "copy")
    server = start_server(sources, data, root)
    yield server
    stop_server(server)


def chromium_executable() -> str:
    """Debian's chromium, installed here if missing (the test set-up is allowed to)."""
    import shutil

    found = shutil.which("chromium")
    if found:
        return found
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True)
        found = shutil.which("chromium")
        if found:
            return found
    pytest.skip("Debian's chromium package is not installed and cannot be installed here (no apt-get or not root)")


@pytest.fixture(scope="module")
def built_with_history(tmp_path_factory):
    """A small enterprise built by `thread build` into the Dagster instance the UI will show."""
    from orchestration.simulate import simulate
    from tests.conftest import SMALL

    root = tmp_path_factory.mktemp("ui")
    sources, data = root / "sources", root / "data"
    simulate(sources, SMALL)
    env = {**os.environ, "THREAD_SOURCES_DIR": str(sources), "THREAD_DATA_DIR": str(data),
           "MES_DATABASE_URL": "", "THREAD_PII_SALT": "test-salt"}
    env.pop("DAGSTER_HOME", None)
    subprocess.run([str(Path(sys.executable).parent / "thread"), "build"], env=env, check=True, capture_output=True)
    subprocess.run([str(Path(sys.executable).parent / "thread"), "report"], env=env, check=True, capture_output=True)
    return root, sources, data
