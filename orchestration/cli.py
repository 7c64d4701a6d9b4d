"""The `thread` command. Argument handling and printing only; the work happens elsewhere."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import click

from . import output, paths, services
from .output import console
from .paths import REPO


class Invocation:
    """What the command line said. The settings (and the Dagster import that comes with them) are
    made for the commands that need them: a question needs the warehouse's path and nothing else,
    and answers in well under a second."""

    def __init__(self, data_dir: str | None, sources_dir: str | None):
        self.data_dir, self.sources_dir = data_dir, sources_dir

    @property
    def warehouse(self) -> Path:
        return paths.warehouse(paths.data_root(self.data_dir))

    @functools.cached_property
    def settings(self):
        from . import settings

        return settings.configure(self.data_dir, self.sources_dir)


@click.group(help="The digital thread: simulate an enterprise, build the thread and twins, serve the UI.")
@click.option("--data-dir", help="Where runs write everything (default: $THREAD_DATA_DIR, else data).")
@click.option("--sources-dir", help="Sources root (default: $THREAD_SOURCES_DIR, else <data>/sources).")
@click.pass_context
def main(ctx: click.Context, data_dir: str | None, sources_dir: str | None) -> None:
    ctx.obj = Invocation(data_dir, sources_dir)


# -- simulate -------------------------------------------------------------------------------------

@main.group(invoke_without_command=True, help="Write a simulated enterprise (the four source systems).")
@click.option("--out", type=click.Path(path_type=Path), help="Sources root to write (default: THREAD_SOURCES_DIR).")
@click.option("--units", default=300, show_default=True, help="Units started over the period.")
@click.option("--parts", default=300, show_default=True, help="Approximate size of the engineering catalogue.")
@click.option("--seed", default=42, show_default=True)
@click.option("--start", "start", help="First simulated day (YYYY-MM-DD); default: --days before today, so that the "
              "enterprise's data ends now (its telemetry is current, not silent).")
@click.option("--days", default=365, show_default=True, help="Number of simulated days.")
@click.option("--telemetry-every-h", default=6, show_default=True, help="Hours between telemetry readings.")
@click.option("--if-missing", is_flag=True, help="Do nothing when the sources root already holds an enterprise.")
@click.pass_context
def simulate(ctx, out, units, parts, seed, start, days, telemetry_every_h, if_missing):
    if ctx.invoked_subcommand:
        return
    from .simulate import MANIFEST, SimConfig
    from .simulate import simulate as run

    out = out or ctx.obj.settings.sources_root
    if if_missing and (out / MANIFEST).exists():
        console.print(f"Sources root {out} already holds a simulated enterprise; keeping it.")
        return
    try:
        first = date.fromisoformat(start) if start else datetime.now(timezone.utc).date() - timedelta(days=days)
    except ValueError:
        raise click.BadParameter(f"{start!r} is not a date (YYYY-MM-DD)", param_hint="--start") from None
    cfg = SimConfig(seed=seed, units=units, parts=parts, start=first, days=days,
                    telemetry_every_h=telemetry_every_h)
    started = time.monotonic()
    try:
        with output.progress() as p:
            result = run(out, cfg, output.track(p))
    except FileExistsError as e:
        raise click.ClickException(str(e)) from e
    output.print_counts(result, time.monotonic() - started)


@simulate.command("advance", help="Add the next DAYS of activity to an existing simulated sources root.")
@click.option("--out", type=click.Path(path_type=Path), help="Sources root (default: THREAD_SOURCES_DIR).")
@click.option("--days", required=True, type=click.IntRange(min=1))
@click.pass_context
def simulate_advance(ctx, out, days):
    from .simulate import advance

    out = out or ctx.obj.settings.sources_root
    started = time.monotonic()
    try:
        with output.progress() as p:
            result = advance(out, days, output.track(p))
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    output.print_counts(result, time.monotonic() - started)


@simulate.command("cmapss", help="Write a turbofan fleet from NASA C-MAPSS run-to-failure data (real telemetry).")
@click.option("--out", type=click.Path(path_type=Path), help="Sources root to write (default: THREAD_SOURCES_DIR).")
@click.option("--file", "file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="A C-MAPSS file, plain or .gz (default: data/reference/cmapss/train_FD001.txt.gz).")
@click.option("--live", is_flag=True, help="Trajectories that stop before failure: no failure events.")
@click.pass_context
def simulate_cmapss(ctx, out, file, live):
    from .simulate.cmapss import write

    out = out or ctx.obj.settings.sources_root
    started = time.monotonic()
    try:
        result = write(out, file, live=live)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    output.print_counts(result, time.monotonic() - started)


# -- build ----------------------------------------------------------------------------------------

@main.command(help="Materialize the whole asset graph in-process and publish warehouse.duckdb.")
@click.option("--full", is_flag=True, help="Recompute every twin, not only those whose inputs changed.")
@click.pass_context
def build(ctx, full):
    import dagster as dg

    from .build import explain, run_build, summary
    from .dbt_project import prepare
    from .defs.jobs import STAGES
    from .settings import dagster_home

    env = ctx.obj.settings
    if not env.sources_root.is_dir():
        raise click.ClickException(
            f"No sources at {env.sources_root}. Run `thread simulate` or set THREAD_SOURCES_DIR.")
    prepare()
    from .definitions import defs

    started = time.monotonic()

    shown_stages, unchanged = set(), set()
    stages = list(STAGES)
    bar = output.progress()
    task = bar.add_task("build", total=len(stages))

    def show(stage, outcomes):
        bar.update(task, completed=stages.index(stage) + 1, description=f"build: {stage} done")
        if stage not in shown_stages:
            console.print(f"[bold]{stage}[/bold]")
            shown_stages.add(stage)
        # The audit tables are recorded by each extraction; dbt models are counted, not listed.
        shown = [o for o in outcomes if not o.key.startswith("audit/") and (
            stage != "thread" or not o.ok or "/" not in o.key or o.key.startswith("health/"))]
        for o in shown:
            mark = "[green]✓[/green]" if o.ok else "[red]✗[/red]"
            console.print(f"  {mark} {o.key:<40} {o.detail}")
        if stage == "thread":
            models = [o for o in outcomes if o.ok and o.key.split("/")[0] in ("staging", "intermediate", "thread", "twin")]
            if models:
                console.print(f"  [green]✓[/green] {'dbt':<40} {len(models)} models built and tested")
            elif not any(not o.ok for o in outcomes):
                unchanged.add("thread")
                console.print(f"  [green]=[/green] {'dbt':<40} unchanged: no model run (inputs as at the last build)")
        if stage == "publish" and not outcomes:
            unchanged.add("publish")
            console.print(f"  [green]=[/green] {'warehouse':<40} unchanged: not rewritten")

    if env.salt_is_generated:
        console.print(f"[yellow bold]THREAD_PII_SALT is not set[/yellow bold]: customers are masked with a generated "
                      f"secret salt kept in {env.generated_salt_file} (owner-only, never published). Set "
                      "THREAD_PII_SALT in production so masks stay the same across data directories.")
    log_path = env.logs_dir / f"build-{time.strftime('%Y%m%dT%H%M%S')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Whatever a library writes to stderr (warnings, a storage driver's own traceback) goes to
        # the log file: the terminal shows progress and one line per failure.
        dagster_home(env)
        services.storage_asked_less()  # as `thread serve`'s processes ask it
        with _terminal_only_for_us(log_path), bar, dg.DagsterInstance.get() as instance:
            result = run_build(defs, instance, env, show, log_path, full=full)
    except Exception as e:  # noqa: BLE001 - one clear line on the terminal, the trace in the log
        import traceback

        where = f"full log: {log_path}"
        try:
            with log_path.open("a", encoding="utf-8") as f:
                traceback.print_exc(file=f)
        except OSError as unwritable:  # the log is on the disk that just filled up
            where = f"the trace could not be written to {log_path}: {unwritable.strerror}"
        raise click.ClickException(f"{explain(f'{type(e).__name__}: {e}', env.data_root)} ({where})")
    elapsed = time.monotonic() - started
    warehouse = env.warehouse
    if warehouse.exists():
        output.print_summary(summary(warehouse), warehouse, elapsed,
                             unchanged={"thread", "publish"} <= unchanged)
    if not result.ok:
        console.print(f"[red]{len(result.failed)} step(s) failed[/red]: " + "; ".join(
            f"{s.key}: {s.detail}" for s in result.failed))
        console.print(f"Full log: {log_path}")
        sys.exit(1)


@contextlib.contextmanager
def _terminal_only_for_us(path: Path):
    """Everything any library writes to stdout or stderr goes to the log file; our console keeps
    the terminal (progress, one line per failure)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding="utf-8", errors="replace")
    before = console.file
    os.dup2(target, 1)
    os.dup2(target, 2)
    console.file = terminal
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        console.file = before
        terminal.close()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)


# -- contracts ----------------------------------------------------------------------------------

@main.group(help="The data contracts of the four source systems.")
def contracts():
    pass


@contracts.command("export", help="Write every contract as an Open Data Contract Standard (v3) YAML file, with this "
                   "data directory's lake as the server: `datacontract test FILE` then runs every rule on what landed.")
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.pass_context
def contracts_export(ctx, out):
    import contracts as registry
    from contracts.odcs import export

    catalog = ctx.obj.settings.lake_catalog
    for path in export(out, registry.SYSTEMS, registry.ENTITIES, catalog):
        console.print(f"wrote {path}")
    if not catalog.exists():
        console.print(f"[yellow]{catalog} does not exist yet: `thread build` writes it; until then "
                      "`datacontract test` has nothing to read.[/]")


# -- ask ----------------------------------------------------------------------------------------

def _questions() -> str:
    from .ask import QUESTIONS, usage

    # \b: click keeps the list's line breaks.
    return "\n\n\b\n" + "\n".join(f"{usage(q)}\n    {q.help}" for q in QUESTIONS.values())


@main.command(help="Ask the thread a question (the answer's SQL is in dbt_project/analyses):" + _questions())
@click.argument("question")
@click.argument("argument", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--lot", help="investigate: only these lots or serial numbers (comma-separated)")
@click.option("--from", "from_", metavar="DATE", help="investigate: installed on or after this date")
@click.option("--to", metavar="DATE", help="investigate: installed on or before this date")
@click.option("--as-of", "as_of", metavar="TIMESTAMP", help="twin: the state published at or before this time (UTC "
              "unless an offset is given)")
@click.option("--since", metavar="TIMESTAMP", help="twin-changes: only states published from this time on")
@click.option("--section", metavar="NAME", help="only this section of a several-part answer (twin: state, components, "
              "sensors; ...); CSV holds one table, so a several-part answer as CSV needs it")
@click.pass_context
def ask(ctx, question, argument, fmt, lot, from_, to, as_of, since, section):
    from .ask import AskError, pick
    from .ask import ask as run

    try:
        with _without_pandas():
            sections = pick(run(ctx.obj.warehouse, question, argument, **{
                "lot": lot, "from": from_, "to": to, "as_of": as_of, "since": since}), section, question)
    except AskError as e:
        raise click.ClickException(str(e)) from e
    if fmt == "csv" and len(sections) > 1:
        from .ask import _table_name

        names = [_table_name(s.title) for s in sections]
        raise click.UsageError(f"`{question}` answers in {len(sections)} sections ({', '.join(names)}) and CSV holds "
                               f"one table: pick one with --section (e.g. --section {names[0]}), or use --format json.")
    output.print_sections(sections, fmt)


@contextlib.contextmanager
def _without_pandas():
    """DuckDB imports pandas (0.5 s or more) when it binds query parameters, only to recognise
    pandas values among them; a question's parameters are strings, dates and times. Marked as
    unavailable for the question only, unless something already imported it."""
    blocked = "pandas" not in sys.modules
    if blocked:
        sys.modules["pandas"] = None
    try:
        yield
    finally:
        if blocked and sys.modules.get("pandas", 0) is None:
            del sys.modules["pandas"]


# -- report -------------------------------------------------------------------------------------

@main.command(help="Write a static HTML report (data/report/index.html) with the thread's key charts.")
@click.pass_context
def report(ctx):
    from .report import generate

    warehouse = ctx.obj.warehouse
    if not warehouse.exists():
        raise click.ClickException(f"No warehouse at {warehouse}: run `thread build` first.")
    with output.progress() as p:
        task = p.add_task("charts", total=1)
        index = generate(warehouse, ctx.obj.settings.report_dir,
                         lambda done, total: p.update(task, completed=done, total=total))
    console.print(f"wrote {index} (open it in a browser; no server needed)")


# -- status -------------------------------------------------------------------------------------

# The monitoring-plugin convention (Nagios, Icinga, Sensu), so cron and monitors can act on it.
STATUS_CODES = {"ok": 0, "warning": 1, "critical": 2}


@main.command(help="Per source system: last successful extraction and freshness; how many twins are stale and why. "
                   "Exit code 0 ok, 1 warning (a system's last extraction failed, its data still within its limit), "
                   "2 critical (a system past its freshness limit, or no warehouse yet). Writes nothing.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def status(ctx, fmt):
    import json

    import duckdb
    from rich.table import Table

    from . import freshness, twins

    env = ctx.obj.settings
    warehouse = env.warehouse
    con = duckdb.connect(str(warehouse), read_only=True) if warehouse.exists() else None
    twin_figures = None
    try:
        if con is not None:
            con.execute("SET TimeZone = 'UTC'")
        newest = freshness.newest_events(con) if con is not None else {}
        if con is not None:
            total, stale = con.execute("SELECT count(*), count(*) FILTER (WHERE is_stale) FROM twin.unit_twin").fetchone()
            reasons = con.execute("SELECT stale_reason, count(*) FROM twin.unit_twin WHERE is_stale "
                                  "GROUP BY 1 ORDER BY 2 DESC").fetchall()
            pending = twins.pending(env.lake_dir)
            twin_figures = {"published": total, "stale": stale, "waiting_for_refresh": pending.num_rows if pending
                            is not None else 0, "stale_reasons": {r or "": n for r, n in reasons}}
    finally:
        if con is not None:
            con.close()
    systems = freshness.sources(env.lake_dir)
    late = [f.system for f in systems if f.is_late]
    failing = [f.system for f in systems if f.is_failing]
    state = "critical" if late or con is None else "warning" if failing else "ok"

    def when(t):
        return t.isoformat() if t else None

    if fmt == "json":
        click.echo(json.dumps({
            "state": state, "exit_code": STATUS_CODES[state], "warehouse": str(warehouse) if con is not None else None,
            "systems": [{"system": f.system, "last_success_at": when(f.last_success_at), "age_hours": f.age_hours,
                         "limit_hours": f.limit_hours, "last_attempt_status": f.last_attempt_status,
                         "is_late": f.is_late, "failing_entities": list(f.failing_entities),
                         "newest_event_at": when(newest.get(f.system))} for f in systems],
            "twins": twin_figures}, indent=2))
        ctx.exit(STATUS_CODES[state])
    table = Table(title="Source systems", show_edge=False)
    for col in ("system", "last successful extraction", "age", "limit", "last attempt", "state", "newest event"):
        table.add_column(col)
    for f in systems:
        shown = "[red]late[/red]" if f.is_late else "[green]fresh[/green]"
        if f.is_failing:
            shown += f" [red](failing: {', '.join(f.failing_entities)})[/red]"
        event = newest.get(f.system)
        table.add_row(f.system, f.last_success_at.strftime("%Y-%m-%d %H:%M UTC") if f.last_success_at else "never",
                      f"{f.age_hours:.1f} h" if f.age_hours is not None else "-", f"{f.limit_hours:g} h",
                      f.last_attempt_status or "-", shown, event.strftime("%Y-%m-%d %H:%M UTC") if event else "-")
    console.print(table)
    console.print("newest event: the latest time the system's data records (a release, a build, an ERP change, a "
                  "service event or reading), beside when it was last extracted.")
    if twin_figures is None:
        console.print("No warehouse yet: run `thread build`.")
    else:
        console.print(f"Twins: {twin_figures['published']:,} published, {twin_figures['stale']:,} marked stale at the "
                      f"last publish; {twin_figures['waiting_for_refresh']:,} waiting for a refresh now.")
        for reason, n in twin_figures["stale_reasons"].items():
            console.print(f"  {n:,}  {reason}")
    if late or failing:
        console.print(f"[red]Now late or failing:[/red] {', '.join(sorted(set(late) | set(failing)))} -- every twin "
                      "fed by them is stale until they extract again.")
    console.print(f"State: {state.upper()}")
    ctx.exit(STATUS_CODES[state])


# -- twin ---------------------------------------------------------------------------------------

@main.group(help="One unit's digital twin.")
def twin():
    pass


@twin.command("export", help="Write twins as Asset Administration Shells (AAS v3.0, checked with aas-test-engines): "
              "one unit (SERIAL) or the whole fleet (--all). --out FILE.json or FILE.aasx holds every shell "
              "asked for; --out DIR gets one file per unit (--format json|aasx); `--out -` writes one unit's "
              "JSON to standard output.")
@click.argument("serial", required=False)
@click.option("--all", "fleet", is_flag=True, help="Every unit with a published twin.")
@click.option("--out", required=True, type=click.Path(path_type=Path, allow_dash=True))
@click.option("--format", "fmt", type=click.Choice(["json", "aasx"]), default="json", show_default=True,
              help="The files' format when --out is a folder.")
@click.pass_context
def twin_export(ctx, serial, fleet, out, fmt):
    from .aas import UnknownSerial, document, export, serials

    warehouse = ctx.obj.warehouse
    if not warehouse.exists():
        raise click.ClickException(f"No warehouse at {warehouse}: run `thread build` first.")
    if bool(serial) == fleet:
        raise click.UsageError("Give a SERIAL or --all (not both).")
    try:
        if str(out) == "-":
            if fleet:
                raise click.UsageError("`--out -` writes one unit; for the fleet give a .aasx file or a folder.")
            click.echo(document(warehouse, serial))
            return
        units = serials(warehouse) if fleet else [serial]
        written = export(warehouse, units, out, fmt)
    except UnknownSerial as e:
        raise click.ClickException(str(e)) from e
    console.print(f"wrote {written[0]}" if len(written) == 1 else f"wrote {len(written)} files to {out}")


# -- docs ---------------------------------------------------------------------------------------

def listening(port: int):
    """--port and --host of a command that serves something."""
    def decorate(fn):
        fn = click.option("--host", default="127.0.0.1", show_default=True,
                          help="Interface to listen on. Anything but loopback exposes it: put it behind an "
                               "authenticating proxy.")(fn)
        return click.option("--port", default=port, show_default=True)(fn)
    return decorate


@main.command(help="Generate the dbt docs of the thread (every table and column) and serve them on 127.0.0.1.")
@listening(8080)
@click.option("--no-serve", is_flag=True, help="Only generate (<data>/docs/static_index.html opens without a server; "
              "index.html needs one).")
@click.pass_context
def docs(ctx, port, host, no_serve):
    from .docs import generate, serve

    try:
        site = generate(ctx.obj.settings)
    except RuntimeError as e:
        raise click.ClickException(str(e)) from e
    console.print(f"dbt docs written to {site}: open {site / 'static_index.html'} in a browser (one file, no server "
                  "needed)" + ("" if no_serve else ", or the served site below"))
    if not no_serve:
        console.print(f"Serving on http://{host}:{port}  (Ctrl-C stops it)")
        serve(ctx.obj.settings, port, host)


# -- api ------------------------------------------------------------------------------------------


@main.command(help="Serve the published twins to applications over HTTP, read-only: an AAS repository (AAS Part 2 "
              "HTTP API v3.0 read profiles: /shells, /submodels, /serialization, /description, /lookup/shells) and "
              "GET /events, every change of a twin as Server-Sent Events (resume with Last-Event-ID or ?after=ID; "
              "?after=now; ?serial=).")
@listening(8081)
@click.pass_context
def api(ctx, port, host):
    from . import api as http_api

    warehouse = ctx.obj.warehouse
    console.print(f"Twin API on http://{host}:{port}  (AAS: /shells, /submodels; events: /events; reads {warehouse}); "
                  "Ctrl-C stops it.")
    http_api.serve(warehouse, host, port)


# -- serve ----------------------------------------------------------------------------------------

@main.command(help="Run the Dagster webserver and daemon on 127.0.0.1 (sensors and schedules on).")
@listening(3000)
@click.pass_context
def serve(ctx, port, host):
    from .dbt_project import prepare
    from .settings import dagster_home

    env = ctx.obj.settings
    prepare()
    home = dagster_home(env)
    console.print(f"Dagster UI on http://{host}:{port}  (DAGSTER_HOME={env.dagster_home}); Ctrl-C stops it.")
    _create_instance_storage(home)
    code_port = _free_port()
    code_server, *others = service_commands(host, port, home, code_port)
    procs = [start_service(code_server)]
    # Webserver and daemon connect once the code server listens (it then loads the definitions).
    _wait_for_port(code_port, procs[0])
    procs += [start_service(cmd) for cmd in others]

    class Stop(Exception):
        pass

    def interrupt(*_):
        raise Stop

    # Only raise in the handler: waiting on the children inside it would deadlock with the main wait.
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    code = 0
    try:
        # Either one ending ends the service: a UI without its daemon runs no sensor.
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        code = next(p.returncode for p in procs if p.returncode is not None) or 1
    except Stop:
        pass
    finally:
        for p in reversed(procs):  # the code server last: the others use it until they stop
            stop_process_group(p)
    sys.exit(code)


@main.command(help="Run a Celery worker that executes the steps of the runs Dagster launches (a team's deployment: "
              "THREAD_CELERY_BROKER_URL, and the Dagster instance on THREAD_DAGSTER_PG_URL). Start one or more per "
              "machine, with the same code and THREAD_* settings; Ctrl-C stops it after its current step.")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(min=1), help="Steps run at once.")
@click.option("--name", help="The worker's name (default: thread-<pid>@<host>).")
@click.pass_context
def worker(ctx, concurrency, name):
    import socket

    from .dbt_project import prepare
    from .defs.executor import CELERY_QUEUE, celery_app
    from .settings import dagster_home

    env = ctx.obj.settings
    for variable, value in (("THREAD_CELERY_BROKER_URL", env.celery_broker_url),
                            ("THREAD_DAGSTER_PG_URL", env.dagster_pg_url)):
        if not value:
            raise click.ClickException(f"{variable} is not set: a worker serves a team's Dagster instance "
                                       "(see README, 'A team's deployment').")
    prepare()
    dagster_home(env)
    name = name or f"thread-{os.getpid()}@{socket.gethostname()}"
    console.print(f"Celery worker {name}: steps from {env.celery_broker_url.split('@')[-1]}, queue {CELERY_QUEUE}, "
                  f"{concurrency} at a time.")
    celery_app(env).worker_main(["worker", "--prefetch-multiplier=1", "-Q", CELERY_QUEUE, "-n", name,
                                 "--concurrency", str(concurrency), "--loglevel", "INFO", "--without-mingle",
                                 "--without-gossip"])


LOCATION = "orchestration.definitions:defs"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _create_instance_storage(home: Path) -> None:
    """The Dagster instance's storage, created here once before the services start: three
    processes creating a fresh SQLite storage at the same moment can stamp its schema twice, and
    then none of them loads."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)):
        pass


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    stop_process_group(proc)
    raise click.ClickException(f"The Dagster code server did not start on port {port} (exit code {proc.poll()}).")


def service_commands(host: str, port: int, home: Path, code_port: int) -> list[list[str]]:
    """A code server, the webserver and the daemon, as Dagster is run in production (`dagster dev`
    is a development wrapper of the same, deprecated in 1.13). The definitions load once, in the
    code server (loopback only); webserver and daemon reach it through a workspace file in the
    Dagster home."""
    bin_dir = Path(sys.executable).parent
    workspace = home / "workspace.yaml"
    workspace.write_text(f"# Written by `thread serve`: the code server it starts.\nload_from:\n  - grpc_server:\n"
                         f"      host: 127.0.0.1\n      port: {code_port}\n      location_name: \"{LOCATION}\"\n")
    module, attribute = LOCATION.split(":")
    # Dagster's code server and daemon through `services`: runs start from a fork of a process with
    # the definitions imported and dbt warm; the daemon looks at sensors every second, at the run
    # queue every half second.
    wrapped = [sys.executable, "-m", services.MODULE]
    return [[*wrapped, "code-server", "start", "-h", "127.0.0.1", "-p", str(code_port), "-m", module,
             "-a", attribute, "-d", str(REPO), "--location-name", LOCATION],
            [str(bin_dir / "dagster-webserver"), "-w", str(workspace), "-h", host, "-p", str(port)],
            [*wrapped, "dagster-daemon", "run", "-w", str(workspace)]]


def _default_signals() -> None:
    # A shell's `cmd &` leaves SIGINT/SIGTERM ignored and children inherit that: restore them,
    # or the services could never be stopped.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_service(cmd: list[str]) -> subprocess.Popen:
    # Its own session, so the whole tree (the service and its code servers) is signalled at once.
    return subprocess.Popen(cmd, cwd=REPO, start_new_session=True, preexec_fn=_default_signals)


def stop_process_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    # Whatever of the tree is left (webserver, daemon, code servers) goes now.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

if __name__ == "__main__":
    main()
