"""The `cvstack` command line: one entry point for every tool of the project."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from backend import service_cli
from backend.bench import cli as bench_cli
from backend.instance import cli as instance_cli
from backend.model_prep import cli as models_cli
from backend.protocol import cli as protocol_cli
from backend.triton_server import cli as triton_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cvstack", description="Real-time computer vision on an on-demand GPU."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    models_cli.register(commands)
    service_cli.register(commands)
    triton_cli.register(commands)
    bench_cli.register(commands)
    instance_cli.register(commands)
    protocol_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
