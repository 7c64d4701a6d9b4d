"""`python -m bench` (`make bench SCALE=S|M|L`, `make bench-rul`): run the benchmark, write
bench/results/<scale>.json and a row of bench/README.md."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--scale", choices=["S", "M", "L"], default="S", help="1k, 10k or 100k units (default S)")
    parser.add_argument("--rul", action="store_true",
                        help="the remaining-useful-life model on C-MAPSS FD001 instead (results/rul_FD001.json)")
    parser.add_argument("--dagster-events", action="store_true",
                        help="Dagster's bookkeeping of a run over 1,000 unit partitions, per storage instead "
                        "(results/dagster_events.json)")
    parser.add_argument("--quarantine", action="store_true",
                        help="quarantining 1,000,000 rejected rows instead (results/quarantine.json)")
    parser.add_argument("--only", help="comma-separated incremental scenarios to run (eco, eco_narrow, "
                        "telemetry_day, retrofit, unchanged); all by default")
    parser.add_argument("--live", action="store_true",
                        help="also measure ECO file change -> published twin with `thread serve` running")
    parser.add_argument("--live-default", action="store_true",
                        help="the default enterprise with `thread serve`: advance 1 day -> every twin published")
    parser.add_argument("--api-only", action="store_true",
                        help="only `thread api`'s AAS latencies, on the data the last run at this scale built "
                        "(kept in the cache); adds them to results/<scale>.json")
    parser.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb",
                        help="spark: the full build on DuckDB and on Spark (each of --spark-masters), same "
                        "enterprise; adds the scale to results/engines.json")
    parser.add_argument("--spark-masters", default="local[1],local[2]",
                        help="comma-separated THREAD_SPARK_MASTER values to measure (default local[1],local[2])")
    parser.add_argument("--units-per-partition", type=int,
                        help="THREAD_TWIN_UNITS_PER_PARTITION for this run (default: unset, the product chooses by fleet size)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "digital-thread-bench",
                        help="where generated enterprises are kept between runs (outside the repository)")
    parser.add_argument("--no-incremental", action="store_true",
                        help="skip the incremental scenarios (each copies the whole lake)")
    args = parser.parse_args(argv)

    from orchestration.dbt_project import prepare

    from .harness import (
        add_aas_api,
        run,
        run_dagster_events,
        run_engines,
        run_live_default,
        run_quarantine,
        run_rul,
        write,
    )

    prepare()
    if args.live_default:
        out = run_live_default(args.cache / "run-live-default")
        path = HERE / "results" / "live_default.json"
        path.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {path}")
        return
    if args.engine == "spark":
        path = run_engines(args.scale, args.seed, args.cache, args.cache / f"run-{args.scale}",
                           args.spark_masters.split(","), HERE / "results")
        print(f"wrote {path}")
        return
    if args.api_only:
        print(f"wrote {add_aas_api(args.scale, args.cache / f'run-{args.scale}', HERE / 'results', HERE / 'README.md')}")
        return
    if args.dagster_events:
        print(f"wrote {run_dagster_events(HERE)}")
        return
    if args.quarantine:
        print(f"wrote {run_quarantine(HERE)}")
        return
    if args.rul:
        print(f"wrote {run_rul(args.cache / 'run-rul', HERE)}")
        return
    result = run(args.scale, args.seed, args.cache, args.cache / f"run-{args.scale}",
                 incremental_scenarios=not args.no_incremental, live_scenarios=args.live,
                 only=set(args.only.split(",")) if args.only else None, units_per_partition=args.units_per_partition)
    print(f"wrote {write(result, HERE / 'results', HERE / 'README.md')} and a row of bench/README.md")


if __name__ == "__main__":
    main()
