"""Where the dbt project is, and keeping its manifest current (dagster-dbt loads it at import)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DBT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"
MANIFEST = DBT_DIR / "target" / "manifest.json"
DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")


def _sources_mtime() -> float:
    files = [p for d in ("models", "macros", "tests", "analyses") for p in (DBT_DIR / d).rglob("*") if p.is_file()]
    files += [DBT_DIR / "dbt_project.yml", DBT_DIR / "profiles.yml"]
    return max(p.stat().st_mtime for p in files)


def ensure_manifest(force: bool = False) -> Path:
    """Run `dbt parse` when the manifest is missing or older than the project files."""
    if force or not MANIFEST.exists() or MANIFEST.stat().st_mtime < _sources_mtime():
        result = subprocess.run(
            [DBT_EXECUTABLE, "parse", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
             "--log-path", str(DBT_DIR / "target" / "logs"), "--quiet"],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"dbt parse failed:\n{result.stdout}\n{result.stderr}")
    return MANIFEST
