"""Nothing changed, nothing done: what each step of the thread was last computed from.

A step's inputs are summarised as a fingerprint (Delta table versions, the relevant part of the
extraction log, the dbt project's code, the masking salt's hash); a step whose fingerprint equals
the one it last completed with does nothing at all — no dbt model, no Delta version, no new
warehouse. Our own fingerprints rather than Dagster's data versions: the inputs that matter are
Delta versions and log states that Dagster does not see (dbt runs inside one step), and a plain
`thread build` must skip exactly as the sensors' runs do.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import contracts

from . import lake


def digest(parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def version(path: Path) -> int:
    dt = lake.table(path)
    return dt.version() if dt is not None else -1


def extraction_state(lake_dir: Path) -> list:
    """What of the extraction log the thread reads: per entity, whether its last attempt failed
    and which batch last changed its data (an unchanged re-extraction changes neither)."""
    log = lake.read(lake.audit_table(lake_dir, "extractions"),
                    columns=["system", "entity", "status", "is_changed", "batch_id", "extracted_at"])
    if log is None:
        return []
    state: dict[str, dict] = {}
    for r in sorted(log.to_pylist(), key=lambda r: r["extracted_at"]):
        s = state.setdefault(f"{r['system']}.{r['entity']}", {"failing": False, "changed": None})
        s["failing"] = r["status"] == "failed"
        if r["status"] == "ok" and r["is_changed"]:
            s["changed"] = r["batch_id"]
    return sorted(state.items())


def code_version(manifest: Path) -> str:
    """The dbt project's code: every node's checksum (not the manifest's own timestamps)."""
    nodes = json.loads(Path(manifest).read_text())["nodes"]
    return digest(sorted((k, n.get("checksum", {}).get("checksum")) for k, n in nodes.items()))


def source_versions(lake_dir: Path) -> dict[str, object]:
    """Each dbt source of the thread (`plm.part_revisions`, `audit.extractions`, ...) as a token
    that changes exactly when what dbt reads from it does: a raw table's Delta version; for the
    extraction log, the state the thread reads from it."""
    out: dict[str, object] = {f"{c.system}.{c.entity}": version(lake.raw_table(lake_dir, c.system, c.entity))
                              for c in contracts.ENTITIES.values()}
    out["audit.contract_findings"] = version(lake.audit_table(lake_dir, "contract_findings"))
    out["audit.extractions"] = digest(extraction_state(lake_dir))
    return out


def thread_code(manifest: Path, salt: str, layout: dict | None = None) -> str:
    """Everything else the thread is computed from: the dbt project, the contracts' declarations
    (the source systems table), the masking salt (the customers' masks), the shard layout."""
    return digest({
        "contracts": [(s.system, s.contract_version, s.freshness_limit.total_seconds()) for s in contracts.SYSTEMS.values()],
        "code": code_version(manifest),
        "salt": hashlib.sha256(salt.encode()).hexdigest(),
        "layout": layout or {},
    })


def changed_sources(last: dict | None, code: str, sources: dict[str, object]) -> list[str] | None:
    """The dbt sources that differ from the last complete build (None: compare nothing, build
    everything — no such build, or the code, contracts, salt or layout changed since)."""
    if not last or last.get("code") != code:
        return None
    return sorted(k for k, v in sources.items() if last["sources"].get(k) != v)


class BuildState:
    """A small JSON file beside the build database, describing it: it means nothing without that
    database (a new build database starts empty), and is replaced atomically."""

    def __init__(self, build_db: Path, name: str):
        self.path = Path(build_db).with_name(name)
        self.build_db = Path(build_db)

    def _read(self) -> dict:
        if not self.build_db.exists() or not self.path.exists():
            return {}
        return json.loads(self.path.read_text())

    def _write(self, data: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(self.path)

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)

    def forget(self, key: str) -> None:
        data = self._read()
        if data.pop(key, None) is not None:
            self._write(data)


class Ledger(BuildState):
    """The fingerprint each step last completed with (build/fingerprints.json)."""

    def __init__(self, build_db: Path):
        super().__init__(build_db, "fingerprints.json")

    def get(self, step: str) -> str | None:
        return self._read().get(step)

    def unchanged(self, step: str, fingerprint: str) -> bool:
        return self.get(step) == fingerprint

    def record(self, step: str, fingerprint: str) -> None:
        data = self._read()
        data[step] = fingerprint
        self._write(data)

    def generation(self, run_id: str) -> str:
        """The build database's state: the thread's fingerprint, or (after a partial or failed dbt
        run) something no later run will match."""
        return self.get("thread") or f"run:{run_id}"
