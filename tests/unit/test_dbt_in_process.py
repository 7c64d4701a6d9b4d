"""dbt run in the step's process (orchestration/defs/dbt_in_process.py): the dbt-core seams it
relies on, and the manifest it does not write."""

from __future__ import annotations

import importlib
import inspect

import pytest

from orchestration.defs import dbt_in_process


def test_dbt_still_writes_the_manifest_where_the_seam_replaces_it():
    """Private to the pinned dbt-core: an upgrade that moves them fails here, not in a refresh."""
    from dbt.parser import manifest
    from dbt.task import runnable

    assert "write_manifest(manifest, runtime_config.project_target_path)" in inspect.getsource(manifest.parse_manifest)
    assert "write_manifest(self.manifest, self.config.project_target_path)" in inspect.getsource(
        runnable.GraphRunnableTask.run)
    for name in dbt_in_process.MANIFEST_WRITERS:
        assert importlib.import_module(name).write_manifest is manifest.write_manifest
    from dbt.compilation import Compiler
    from dbt.task.build import BuildTask

    assert "self.write_graph_file(linker, manifest)" in inspect.getsource(Compiler.compile)
    assert "self.compiler.compile(self.manifest, add_test_edges=True)" in inspect.getsource(BuildTask.compile_manifest)


def test_within_an_invocation_the_manifest_keeps_its_maps_but_is_not_written(tmp_path):
    from dbt.parser import manifest
    from dbt.task import runnable

    original = manifest.write_manifest

    class Manifest:
        calls: list[str] = []

        def build_parent_and_child_maps(self):
            self.calls.append("maps")

        def build_group_map(self):
            self.calls.append("groups")

    from dbt.compilation import Compiler

    write_graph_file = Compiler.write_graph_file
    with dbt_in_process._artifacts_not_written():
        assert manifest.write_manifest is not original and runnable.write_manifest is manifest.write_manifest
        manifest.write_manifest(Manifest(), str(tmp_path))
        assert Compiler.write_graph_file(None, None, None) is None
    assert Manifest.calls == ["maps", "groups"]
    assert list(tmp_path.iterdir()) == []
    assert manifest.write_manifest is original and runnable.write_manifest is original
    assert Compiler.write_graph_file is write_graph_file


def test_a_moved_seam_is_named_in_the_error(monkeypatch):
    from dbt.task import runnable

    monkeypatch.setattr(runnable, "write_manifest", lambda *a: None)
    with pytest.raises(RuntimeError, match=r"dbt\.task\.runnable\.write_manifest is not dbt's"):
        with dbt_in_process._artifacts_not_written():
            pass


def test_the_dbt_log_level_is_dbts_own_and_info_by_default(monkeypatch):
    from orchestration.settings import ThreadSettings

    settings = ThreadSettings(sources_dir="s", data_dir="d")
    monkeypatch.delenv("THREAD_DBT_LOG_LEVEL", raising=False)
    assert settings.dbt_file_log_level == "info"
    monkeypatch.setenv("THREAD_DBT_LOG_LEVEL", "DEBUG")
    assert settings.dbt_file_log_level == "debug"
    monkeypatch.setenv("THREAD_DBT_LOG_LEVEL", "verbose")
    with pytest.raises(ValueError, match="THREAD_DBT_LOG_LEVEL must be one of debug, info"):
        settings.dbt_file_log_level


def test_warming_parses_the_project_and_compiles_every_macro_once():
    """What the fork server of `thread serve` runs before forking runs: afterwards dbt's template
    cache holds every macro, so a run's first invocation compiles none (a fresh process: the
    cache is per process)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", (
        "from orchestration.defs import dbt_in_process\n"
        "from dbt_common.clients.jinja import template_cache\n"
        "assert not template_cache.file_cache\n"
        "dbt_in_process.warm()\n"
        "print(len(template_cache.file_cache))\n")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dbt warm-up skipped" not in done.stderr
    assert int(done.stdout.split()[-1]) > 200


def test_an_invocation_reuses_the_last_parse_of_the_project_with_the_same_vars(tmp_path):
    """dbt parses the project once per process and set of vars (fork server: before any run), not
    once per invocation; a changed project file, other vars or a failed invocation parse again."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", (
        "import json, os, sys\n"
        "from pathlib import Path\n"
        "import dbt.cli.requires as requires\n"
        "from orchestration import dbt_project\n"
        "from orchestration.defs import dbt_in_process\n"
        "from orchestration.settings import ThreadSettings\n"
        "tmp = Path(sys.argv[1])\n"
        "parses = []\n"
        "parse = requires.parse_manifest\n"
        "requires.parse_manifest = lambda *a, **k: parses.append(1) or parse(*a, **k)\n"
        "extra = tmp / 'model.sql'\n"
        "extra.write_text('x')\n"
        "files = dbt_project.project_files\n"
        "dbt_project.project_files = lambda: [*files(), extra]\n"
        "def ls(vars, *more, ok=True):\n"
        "    proc = dbt_in_process.DbtThread(['dbt', 'ls', '--select', 'units', '--vars', json.dumps(vars),\n"
        "        '--project-dir', str(dbt_project.DBT_DIR), '--profiles-dir', str(dbt_project.DBT_DIR),\n"
        "        '--target-path', str(tmp / 'target'), '--log-path', str(tmp), *more], env={})\n"
        "    out = proc.stdout.read().decode()\n"
        "    assert (proc.wait() == 0 and 'thread.units' in out) is ok, out[-2000:]\n"
        "    return len(parses)\n"
        "a, b = {'build_db': str(tmp / 'a.duckdb')}, {'build_db': str(tmp / 'b.duckdb')}\n"
        "counts = [ls(a), ls(a), ls(b), ls(b), ls(a)]\n"
        "os.utime(extra, ns=(1, 1))\n"
        "counts.append(ls(a))\n"
        "settings = ThreadSettings(sources_dir=str(tmp), data_dir=str(tmp / 'data'))\n"
        "dbt_in_process.warm(settings)\n"
        "warmed = len(parses)\n"
        "counts.append(ls(settings.dbt_vars()) - warmed)\n"
        "ls(settings.dbt_vars(), '--resource-type', 'nonsense', ok=False)\n"
        "counts.append(ls(settings.dbt_vars()) - warmed)\n"
        "assert not (tmp / 'target' / 'graph.gpickle').exists()\n"
        "print(counts)\n"), str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dbt warm-up skipped" not in done.stderr
    assert done.stdout.split("\n")[-2] == "[1, 1, 2, 2, 3, 4, 0, 1]", done.stdout[-2000:]
