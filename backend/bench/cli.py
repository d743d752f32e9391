"""`cvstack bench ...`: run a benchmark and print its markdown table."""

from __future__ import annotations

import argparse
from pathlib import Path

from backend.bench.triton_bench import render_markdown, run_triton_bench
from backend.cli_support import fail, positive_int
from backend.model_prep.manifest import ManifestError
from backend.paths import default_models_dir
from backend.triton_server.install import TritonLaunchError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `bench` command group."""
    bench = subparsers.add_parser("bench", help="measure speed; prints markdown tables")
    commands = bench.add_subparsers(dest="bench_command", required=True)
    triton = commands.add_parser("triton", help="Triton on CPU vs onnxruntime in-process")
    triton.add_argument("--models-dir", type=Path, default=None)
    triton.add_argument("--repeats", type=positive_int, default=50, help="timed calls per row")
    triton.add_argument("--starts", type=positive_int, default=3, help="server starts to time")
    triton.add_argument("--concurrency", type=positive_int, default=8)
    triton.set_defaults(handler=_triton)


def _triton(args: argparse.Namespace) -> int:
    try:
        result = run_triton_bench(
            args.models_dir or default_models_dir(),
            repeats=args.repeats,
            starts=args.starts,
            concurrency=args.concurrency,
        )
    except (ManifestError, TritonLaunchError, ValueError) as exc:
        return fail(str(exc))
    print(render_markdown(result), end="")
    return 0
