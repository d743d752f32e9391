"""Arguments and entry point of `cvstack bench hostile`."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from backend.bench.hostile_bench import HostileConfig, run_hostile_bench
from backend.bench.hostile_context import AttackOptions
from backend.bench.hostile_report import render_markdown
from backend.bench.hostile_runner import ATTACKS
from backend.cli_support import fail, positive_int
from backend.model_prep.manifest import ManifestError
from backend.paths import default_models_dir
from backend.triton_server.install import TritonLaunchError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument(
        "--seconds", type=positive_int, default=20, help="victim measuring time per attack"
    )
    parser.add_argument(
        "--quiet-seconds", type=positive_int, default=8, help="victim alone before each attack"
    )
    parser.add_argument(
        "--settle-seconds", type=positive_int, default=20, help="longest wait after an attack"
    )
    parser.add_argument("--max-sessions", type=positive_int, default=4, help="backend slots")
    parser.add_argument(
        "--send-timeout", type=positive_int, default=10, help="backend send deadline, s"
    )
    parser.add_argument("--workers", type=positive_int, default=4, help="flood connections")
    parser.add_argument(
        "--slowloris", type=positive_int, default=2000, help="half-open connections at once"
    )
    parser.add_argument(
        "--attacks",
        type=_attack_names,
        default=tuple(ATTACKS),
        help=f"comma-separated, in order (default: all): {','.join(ATTACKS)}",
    )
    parser.add_argument("--server-log", type=Path, default=None, help="keep the backend's log")


def main(args: argparse.Namespace) -> int:
    """Print the table; exit 1 when a target is missed."""
    config = HostileConfig(
        seconds=args.seconds,
        quiet_seconds=args.quiet_seconds,
        settle_s=args.settle_seconds,
        max_sessions=args.max_sessions,
        send_timeout_s=args.send_timeout,
        attacks=args.attacks,
        options=AttackOptions(workers=args.workers, slowloris=args.slowloris),
    )
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(args.server_log.open("wb")) if args.server_log else None
        try:
            result = run_hostile_bench(args.models_dir or default_models_dir(), config, log)
        except (ManifestError, TritonLaunchError, RuntimeError) as exc:
            return fail(str(exc))
    print(render_markdown(result), end="")
    return 0 if result.passed() else 1


def _attack_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in ATTACKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown attack {', '.join(unknown) or '(none)'}; choose from {', '.join(ATTACKS)}"
        )
    return names
