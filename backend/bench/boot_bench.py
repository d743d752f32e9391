"""`cvstack bench boot`: the instance's boot chain step by step, the previous arrangement beside
the current one, both run here in one invocation.

The instance boots as: model sync from S3 (+ the model repository) -> engine link (cached plans)
-> Triton ready and backend ready. Here the S3 model store is moto's server on loopback, the
boot steps are real `cvstack instance` processes, Triton is the real server on CPU and the
backend the real `cvstack serve` process. Each run first syncs into an empty folder (a first
boot); then every later boot's chain runs twice:

- before: the CLI imported every command group (the service's FastAPI, onnxruntime, OCR,
  LangChain) for each boot step; the sync and the repository render were two processes (two
  container starts on the instance); the backend started once Triton was ready.
- after: `cvstack instance` imports only its own group; one process syncs and renders; Triton
  and the backend start together (the backend's imports overlap Triton's model load) and the
  chain ends when `/ready` answers 200, which needs Triton ready.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3

from backend.bench.machine import describe_machine
from backend.bench.stack import backend_process
from backend.cli_support import fail, positive_int
from backend.model_prep.manifest import ManifestError, load_manifest
from backend.paths import REPO_ROOT, default_models_dir
from backend.triton_server.install import TritonLaunchError
from backend.triton_server.local_server import LocalTritonServer, ServerAddress

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "cvstack-bench-models"
PREFIX = "models/"
SOURCE = f"s3://{BUCKET}/{PREFIX}"
# The previous CLI imported every command group before parsing: build_parser() without a
# command still does, so this runs a command exactly as the previous entry point did.
EAGER_CLI = (
    "import sys; from backend.cli import build_parser, main; build_parser(); sys.exit(main())"
)
LAZY_CLI = "import sys; from backend.cli import main; sys.exit(main())"


@dataclass(frozen=True)
class Chain:
    """One arrangement's later-boot chain, in seconds; 0 for a step it does not have."""

    cli_start_s: float  # `cvstack instance --help`: what every boot step's process pays first
    sync_s: float  # the model sync's process, nothing changed (after: + the repository)
    render_s: float  # the repository render's own process (after: none)
    triton_s: float  # Triton start to ready while nothing else starts (after: none)
    backend_s: float  # backend start to /ready 200 once Triton is ready (after: none)
    together_s: float  # Triton and backend started at once, to /ready 200 (before: none)

    @property
    def stack_s(self) -> float:
        return self.triton_s + self.backend_s + self.together_s

    @property
    def total_s(self) -> float:
        return self.sync_s + self.render_s + self.stack_s


@dataclass(frozen=True)
class BootRun:
    cold_sync_s: float  # first boot: every file from S3, and the repository
    before: Chain
    after: Chain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--runs", type=positive_int, default=3, help="boots to time")


def main(args: argparse.Namespace) -> int:
    try:
        runs = run_boot_bench(args.models_dir or default_models_dir(), args.runs)
    except (ManifestError, TritonLaunchError, RuntimeError) as exc:
        return fail(str(exc))
    print(render_markdown(runs), end="")
    return 0


def run_boot_bench(models_dir: Path, runs: int) -> list[BootRun]:
    """Time `runs` boots against a moto S3 holding `models_dir`."""
    load_manifest(models_dir)
    with _moto_s3() as (s3, env), tempfile.TemporaryDirectory(prefix="cvstack-boot-") as tmp:
        for path in sorted(models_dir.iterdir()):
            if path.is_file():
                s3.upload_file(str(path), BUCKET, f"{PREFIX}{path.name}")
        return [_boot(env, Path(tmp) / f"run{index}") for index in range(runs)]


def _boot(env: dict[str, str], root: Path) -> BootRun:
    models, repository = root / "models", root / "repository"
    sync = ["instance", "sync-models", "--source", SOURCE, "--target", str(models)]
    render = ["--repository", str(repository), "--flavour", "cpu"]
    cold = _cli(LAZY_CLI, [*sync, *render], env)
    help_args = ["instance", "--help"]
    before_sync = _cli(EAGER_CLI, sync, env)
    before_render = _cli(
        EAGER_CLI, ["instance", "repository", "--flavour", "cpu", "--models-dir", str(models),
                    "--out", str(repository)], env,
    )  # fmt: skip
    triton_s, backend_s = _stack_in_turn(models, repository, root / "before")
    before = Chain(_cli(EAGER_CLI, help_args, env), before_sync, before_render, triton_s,
                   backend_s, 0.0)  # fmt: skip
    after_sync = _cli(LAZY_CLI, [*sync, *render], env)
    together_s = _stack_together(models, repository, root / "after")
    after = Chain(_cli(LAZY_CLI, help_args, env), after_sync, 0.0, 0.0, 0.0, together_s)
    return BootRun(cold, before, after)


def _cli(program: str, args: list[str], env: dict[str, str]) -> float:
    """Seconds one `cvstack` command takes as its own process (a boot step's container)."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", program, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"cvstack {' '.join(args)} failed: {result.stderr[-2000:]}")
    return time.monotonic() - started


def _triton(models: Path, repository: Path, state: Path) -> LocalTritonServer:
    names = [name for name, e in load_manifest(models).models.items() if e.served_by_triton]
    return LocalTritonServer(repository, names, state, ServerAddress.on_free_ports())


def _stack_in_turn(models: Path, repository: Path, state: Path) -> tuple[float, float]:
    """Before: Triton to ready, then the backend to /ready 200."""
    triton = _triton(models, repository, state)
    triton_s = triton.start(timeout_s=120)
    try:
        with backend_process(models, triton.address) as backend:
            return triton_s, backend.ready_s
    finally:
        triton.stop()


def _stack_together(models: Path, repository: Path, state: Path) -> float:
    """After: Triton and the backend started at once; seconds to /ready 200."""
    triton = _triton(models, repository, state)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as pool:
        loading = pool.submit(triton.start, 120)
        try:
            with backend_process(models, triton.address):
                ready_s = time.monotonic() - started
            loading.result()
        finally:
            triton.stop()
    return ready_s


@contextlib.contextmanager
def _moto_s3() -> Iterator[tuple[S3Client, dict[str, str]]]:
    """An S3 bucket on moto's server; the environment that points a process's boto3 at it."""
    # moto (the `infra` extra) is not in the backend image; only this benchmark needs it.
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(
        ip_address="127.0.0.1", port=ServerAddress.on_free_ports().http_port
    )
    with contextlib.redirect_stdout(io.StringIO()):  # its start banner would land in the table
        server.start()
    host, port = server.get_host_and_port()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        s3 = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        s3.create_bucket(Bucket=BUCKET)
        yield s3, env
    finally:
        server.stop()


def render_markdown(runs: list[BootRun]) -> str:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    def cell(value: float) -> str:
        return f"{value:.2f}" if value else "-"

    def row(name: str, before: list[float], after: list[float]) -> str:
        ratio = f"{med(after) / med(before):.2f}" if med(before) and med(after) else "-"
        return f"| {name} | {cell(med(before))} | {cell(med(after))} | {ratio} |"

    def both(step: str) -> tuple[list[float], list[float]]:
        return (
            [getattr(r.before, step) for r in runs],
            [getattr(r.after, step) for r in runs],
        )

    lines = [
        f"Machine: {describe_machine()}. Medians of {len(runs)} runs, seconds.",
        "",
        "| step (a later boot: models unchanged) | before | after | after / before |",
        "|---|---|---|---|",
        row("`cvstack instance` process start (imports; each boot step's container)",
            *both("cli_start_s")),
        row("model sync (after: + the repository, one process)", *both("sync_s")),
        row("repository render, its own process", *both("render_s")),
        row("Triton on CPU: start to ready, alone", *both("triton_s")),
        row("backend: start to /ready 200, after Triton", *both("backend_s")),
        row("Triton and backend started together: to /ready 200", *both("together_s")),
        row("**stack: start to /ready 200**", *both("stack_s")),
        row("**chain: sync to /ready 200**", *both("total_s")),
        "",
        f"First boot (empty folder, every file from S3, then the repository, one process): "
        f"{med([r.cold_sync_s for r in runs]):.2f} s.",
        "",
    ]  # fmt: skip
    return "\n".join(lines)
