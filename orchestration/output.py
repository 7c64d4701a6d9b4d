"""What the `thread` command prints: progress bars, counts, the build summary, answers as table,
CSV or JSON. Printing only; the CLI decides what to print."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

# Piped or redirected, a line is as long as its content: a table folded at 80 columns splits
# serial numbers across lines, which breaks grep, cut and every reader after the pipe.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 1_000_000)


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


def track(progress: Progress):
    tasks = {}

    def update(kind: str, done: int, total: int) -> None:
        if kind not in tasks:
            tasks[kind] = progress.add_task(kind, total=total)
        progress.update(tasks[kind], completed=done, total=total)

    return update


def print_counts(result, seconds: float) -> None:
    table = Table(title=f"Simulated enterprise in {result.out} (up to {result.horizon})", show_edge=False)
    table.add_column("system.entity")
    table.add_column("rows written", justify="right")
    for name, n in result.counts.items():
        table.add_row(name, f"{n:,}")
    console.print(table)
    console.print(f"Done in {seconds:.1f} s.")


def print_summary(s: dict, warehouse: Path, elapsed: float, unchanged: bool = False) -> None:
    health = ", ".join(f"{k} {v}" for k, v in s["health"].items())
    console.print()
    if unchanged:
        console.print(f"[bold]Digital thread unchanged[/bold] (checked in {elapsed:.0f} s: no source changed, "
                      f"nothing rebuilt) -> {warehouse}")
    else:
        console.print(f"[bold]Digital thread built in {elapsed:.0f} s[/bold] -> {warehouse}")
    console.print(f"  units                 {s['units']:,}")
    console.print(f"  twins                 {s['twins']:,}  (health: {health})")
    console.print(f"  deviations            {s['deviations']:,} on {s['units_with_deviations']:,} units")
    console.print(f"  ECOs with gaps        {s['ecos_with_gaps']:,} of {s['released_ecos']:,} released")
    console.print(f"  pending retrofits     {s['pending_retrofits']:,}")
    console.print(f"  contract violations   {s['violations_error']:,} errors, {s['violations_warning']:,} warnings")
    console.print()
    console.print("Next steps:")
    console.print("  make serve                         # Dagster UI on http://127.0.0.1:3000 (lineage, runs, freshness)")
    console.print("  .venv/bin/thread ask eco-gaps         # or any question: .venv/bin/thread ask --help")
    console.print(f"  .venv/bin/python -c \"import duckdb; duckdb.connect('{warehouse}', read_only=True)"
                  ".sql('select * from twin.unit_twin limit 10').show()\"")


def print_sections(sections, fmt: str) -> None:
    import csv
    import json

    if fmt == "json":
        docs = {s.title: [dict(zip(s.columns, r)) for r in s.rows] for s in sections}
        out = docs[sections[0].title] if len(sections) == 1 else docs
        click.echo(json.dumps(out, indent=2, default=str))
        return
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        for i, s in enumerate(sections):
            if len(sections) > 1:
                click.echo(("\n" if i else "") + f"# {s.title}")
            writer.writerow(s.columns)
            writer.writerows(["" if v is None else v for v in r] for r in s.rows)
        return
    def text(v) -> str:
        return "" if v is None else (f"{v:%Y-%m-%d %H:%M}" if hasattr(v, "strftime") else str(v))

    for s in sections:
        title = f"{s.title} ({len(s.rows)} row{'s' if len(s.rows) != 1 else ''})"
        if len(s.rows) == 1:
            # One record reads best as a card: field per line.
            table = Table(title=title, show_edge=False, show_header=False)
            table.add_column(style="bold")
            table.add_column(overflow="fold")
            for c, v in zip(s.columns, s.rows[0]):
                table.add_row(c, text(v))
        else:
            table = Table(title=title, show_edge=False)
            for c in s.columns:
                table.add_column(c, overflow="fold")
            for r in s.rows:
                table.add_row(*(text(v) for v in r))
        console.print(table)
