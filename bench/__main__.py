"""Command line of the benchmark: ``python -m bench [--smoke] [options]``."""

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

from bench.mlserver_process import DEFAULT_VENV
from bench.report import render
from bench.runner import SMOKE_SETTINGS, BenchConfig, run_benchmark


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Open-loop benchmark of the suite on this machine, over loopback.",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a run of a few seconds: 60 customers, one rate of 50/s, no search, "
        "no MLServer",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for results.json, report.md, the suite's data and logs "
        "(default: var/bench/<UTC time>)",
    )
    parser.add_argument("--data", type=Path, help="CDNOW-format purchase file")
    parser.add_argument(
        "--customers", type=int, help="customers to load (default 2000)"
    )
    parser.add_argument(
        "--rates",
        type=float,
        nargs="+",
        help="offered rates in calls/s (default 100 250 500 1000)",
    )
    parser.add_argument(
        "--duration", type=float, help="measured seconds per run (default 10)"
    )
    parser.add_argument(
        "--warmup", type=float, help="unmeasured seconds before each run (default 2)"
    )
    parser.add_argument(
        "--no-search", action="store_true", help="skip the max-rate search"
    )
    parser.add_argument(
        "--mlserver-venv",
        type=Path,
        help=f"MLServer virtual environment (default {DEFAULT_VENV})",
    )
    parser.add_argument("--no-mlserver", action="store_true", help="skip MLServer")
    parser.add_argument(
        "--client-processes", type=int, help="load generator processes (default 2)"
    )
    parser.add_argument(
        "--client-threads", type=int, help="sending threads per process (default 16)"
    )
    parser.add_argument(
        "--models", type=Path, help="model folder, trained there when empty"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Return the run's config: the full defaults or the smoke preset, then the options."""
    out_dir = args.out or Path("var/bench") / time.strftime(
        "%Y%m%dT%H%M%SZ", time.gmtime()
    )
    # Absolute, because redis-server and MLServer run in folders of their own.
    config = BenchConfig(out_dir=out_dir.absolute())
    if args.smoke:
        config = dataclasses.replace(config, **SMOKE_SETTINGS)
    overrides = {
        "data_path": args.data,
        "customers": args.customers,
        "rates": tuple(args.rates) if args.rates else None,
        "duration_seconds": args.duration,
        "warmup_seconds": args.warmup,
        "client_processes": args.client_processes,
        "client_threads": args.client_threads,
        "models_dir": args.models,
        "mlserver_venv": args.mlserver_venv,
    }
    config = dataclasses.replace(
        config, **{key: value for key, value in overrides.items() if value is not None}
    )
    if args.no_search:
        config = dataclasses.replace(config, search=False)
    if args.no_mlserver:
        config = dataclasses.replace(config, mlserver_venv=None)
    return config


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    config = config_from_args(args)
    if (
        config.mlserver_venv is not None
        and not (config.mlserver_venv / "bin" / "mlserver").exists()
    ):
        raise SystemExit(
            f"no MLServer in {config.mlserver_venv}; create it as docs/benchmarks.md "
            "shows, or pass --no-mlserver"
        )

    report = run_benchmark(config)
    data = report.as_dict()
    (config.out_dir / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    markdown = render(data)
    (config.out_dir / "report.md").write_text(markdown)
    print()
    print(markdown)
    print(f"Results written to {config.out_dir}")


if __name__ == "__main__":
    main()
