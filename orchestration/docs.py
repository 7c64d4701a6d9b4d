"""dbt docs for the thread: what every table and column means, with lineage, for analysts."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
from pathlib import Path

from .dbt_project import DBT_DIR, DBT_EXECUTABLE


def generate(data_dir: Path) -> Path:
    build_db = Path(data_dir) / "build" / "build.duckdb"
    if not build_db.exists():
        raise RuntimeError(f"No build at {build_db}: run `thread build` first (the docs read its catalog).")
    site = Path(data_dir) / "docs"
    target = Path(data_dir) / "build" / "dbt_docs_target"
    result = subprocess.run(
        [DBT_EXECUTABLE, "docs", "generate", "--static", "--project-dir", str(DBT_DIR), "--profiles-dir",
         str(DBT_DIR), "--vars", json.dumps({"build_db": str(build_db)}), "--target-path", str(target),
         "--log-path", str(Path(data_dir) / "logs" / "dbt")],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"dbt docs generate failed:\n{result.stdout[-3000:]}")
    site.mkdir(parents=True, exist_ok=True)
    for name in ("index.html", "static_index.html", "manifest.json", "catalog.json"):
        shutil.copy2(target / name, site / name)
    return site


def make_server(site: Path, port: int, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    return http.server.ThreadingHTTPServer((host, port), handler)


def serve_dir(site: Path, port: int, host: str = "127.0.0.1") -> None:
    with make_server(site, port, host) as httpd:
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass
