"""The ``trustfirst`` command: run the suite, train a model, and call running services.

``demo``, ``up`` and ``train`` work on one machine. ``resolve``, ``lookup``, ``grant``,
``deny``, ``withdraw``, ``check``, ``decide``, ``outcome`` and ``actions`` call a running
service and print its response as JSON; ``report`` runs the decision report.
"""

import argparse
import contextlib
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from shared.logs import configure_logging
from suite import client_commands

REPORT_MODULE = "services.decision.report"

DEFAULT_DATA_DIR = Path(os.environ.get("TRUSTFIRST_DATA_DIR", "var"))


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="folder for the embedded Redis data, the model and service logs "
        "(default: $TRUSTFIRST_DATA_DIR or ./var)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL"),
        help="use this Redis server instead of an embedded one (default: $REDIS_URL)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trustfirst",
        description="Consent-gated next-best-action decisioning on one machine.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="start the suite, load the CDNOW customers, replay decisions, print a summary",
    )
    _add_common(demo)
    demo.add_argument("--data", type=Path, help="CDNOW-format purchase file")
    demo.add_argument(
        "--limit", type=int, default=0, help="customers to load (default: all)"
    )
    demo.add_argument(
        "--concurrency", type=int, default=4, help="Decide calls in flight at once"
    )
    demo.add_argument("--seed", type=int, default=7, help="seed of the consent mix")

    up = commands.add_parser("up", help="start the suite and serve until Ctrl-C")
    _add_common(up)

    train = commands.add_parser("train", help="train a model from a CDNOW-format file")
    train.add_argument("--data", type=Path, help="CDNOW-format purchase file")
    train.add_argument(
        "--out", type=Path, default=DEFAULT_DATA_DIR / "models", help="model folder"
    )

    client_commands.add_parsers(commands)
    report = commands.add_parser(
        "report",
        help=f"run the decision report (python -m {REPORT_MODULE}); "
        "arguments after `report` are passed on",
        add_help=False,
    )
    report.add_argument("report_args", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    configure_logging("trustfirst", level="WARNING", fmt="text")

    if args.command in client_commands.COMMANDS:
        _call_service(args)
        return
    if args.command == "report":
        sys.exit(_run_report(args.report_args))

    try:
        if args.command == "demo":
            from suite.demo import DemoConfig, run_demo

            run_demo(
                DemoConfig(
                    data_dir=args.data_dir,
                    data_path=args.data,
                    redis_url=args.redis_url,
                    limit=args.limit,
                    concurrency=args.concurrency,
                    seed=args.seed,
                )
            )
        elif args.command == "up":
            _serve(args.data_dir, args.redis_url)
        elif args.command == "train":
            from suite.dataset import ensure_model

            ensure_model(args.out, args.data, force=True)
    except KeyboardInterrupt:
        sys.exit(130)
    except (RuntimeError, OSError, ValueError) as error:
        logging.getLogger("trustfirst").debug("command failed", exc_info=True)
        print(f"trustfirst {args.command}: {error}", file=sys.stderr)
        sys.exit(1)


def _call_service(args: argparse.Namespace) -> None:
    """Run a client command; print the response, or the error and exit with status 1."""
    command = client_commands.COMMANDS[args.command]
    try:
        response = command(args)
    except client_commands.CallFailed as error:
        print(f"trustfirst {args.command}: {error}", file=sys.stderr)
        sys.exit(1)
    print(client_commands.to_json(response))


def _run_report(report_args: list[str]) -> int:
    """Run the decision report module with report_args; return its exit status."""
    if importlib.util.find_spec(REPORT_MODULE) is None:
        print(
            f"trustfirst report: {REPORT_MODULE} is not in this installation; "
            "update trustfirst to a version with the decision report",
            file=sys.stderr,
        )
        return 1
    command = [sys.executable, "-m", REPORT_MODULE, *report_args]
    return subprocess.run(command, check=False).returncode


def _serve(data_dir: Path, redis_url: str | None) -> None:
    from suite.dataset import ensure_model
    from suite.launcher import DEFAULT_PORTS, start_suite

    model_path = ensure_model(data_dir / "models", None)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with start_suite(data_dir, model_path, redis_url, ports=DEFAULT_PORTS) as suite:
        print(f"Redis: {suite.redis_url}")
        for name, service in suite.services.items():
            print(f"{name}: {service.target} (log: {service.log_path})")
        print("Serving; press Ctrl-C to stop.")
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
