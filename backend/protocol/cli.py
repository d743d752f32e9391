"""`cvstack protocol generate`: write the schema and the page's error codes from the types."""

from __future__ import annotations

import argparse
from pathlib import Path

from backend.cli_support import fail
from backend.paths import REPO_ROOT
from backend.protocol.generated import GENERATE_COMMAND, stale_files, write_generated_files


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `protocol` command group."""
    protocol = subparsers.add_parser("protocol", help="files generated from the protocol's types")
    commands = protocol.add_subparsers(dest="protocol_command", required=True)
    generate = commands.add_parser(
        "generate",
        help="write docs/protocol.schema.json and frontend/js/error_codes.js",
    )
    generate.add_argument(
        "--check", action="store_true", help="write nothing; fail if a file is out of date"
    )
    generate.set_defaults(handler=_generate)


def _generate(args: argparse.Namespace) -> int:
    if args.check:
        stale = stale_files()
        if stale:
            return fail(f"out of date: {_names(stale)}; run `{GENERATE_COMMAND}`")
        print("up to date")
        return 0
    written = write_generated_files()
    print(f"wrote {_names(written)}" if written else "up to date")
    return 0


def _names(paths: list[Path]) -> str:
    return ", ".join(str(path.relative_to(REPO_ROOT)) for path in paths)
