"""The `cvstack` command line: one entry point for every tool of the project.

Each command group lives in its own module, imported only when its command runs: the instance's
boot steps (`cvstack instance ...`, one container start each) must not pay for the service's
imports (FastAPI, onnxruntime, OCR, LangChain: about 3.5 s of a 5-s `cvstack instance --help`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command -> the module whose `register(subparsers)` adds it, in the order `--help` lists them.
COMMAND_MODULES = {
    "models": "backend.model_prep.cli",
    "serve": "backend.service_cli",
    "demo": "backend.service_cli",
    "triton": "backend.triton_server.cli",
    "bench": "backend.bench.cli",
    "instance": "backend.instance.cli",
    "protocol": "backend.protocol.cli",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command group, or with only the one that registers `command`."""
    parser = argparse.ArgumentParser(
        prog="cvstack", description="Real-time computer vision on an on-demand GPU."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    modules = (
        [COMMAND_MODULES[command]]
        if command in COMMAND_MODULES
        else list(dict.fromkeys(COMMAND_MODULES.values()))
    )
    for module in modules:
        importlib.import_module(module).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(arguments[0] if arguments else None).parse_args(arguments)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
