"""Small helpers shared by the `cvstack` sub-commands: argument types and error output."""

from __future__ import annotations

import argparse
import sys


def fail(message: str) -> int:
    """Print one clear error line and return the exit code for user errors."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number above 0 (seconds, say)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port 1..65535."""
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value
