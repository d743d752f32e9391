"""`cvstack bench boot`: boot-to-ready of the parts of an instance boot this machine can run.

The instance boots as: model sync from S3 -> engine link (cached plans) -> Triton ready ->
backend ready. Here the S3 model store is moto's server on loopback, Triton is the real server
on CPU and the backend is the real `cvstack serve` process, run one after the other as systemd
runs them. Each run starts from an empty models folder (first boot) and then syncs again with
nothing changed (every later boot).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3

from backend.bench.machine import describe_machine
from backend.bench.stack import backend_process
from backend.cli_support import fail, positive_int
from backend.instance.model_sync import ModelSyncError, sync_models
from backend.model_prep.manifest import ManifestError, load_manifest
from backend.paths import default_models_dir
from backend.triton_server.install import TritonLaunchError
from backend.triton_server.local_server import LocalTritonServer, ServerAddress
from backend.triton_server.repository import render_repository

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "cvstack-bench-models"
PREFIX = "models/"

# A g4dn.xlarge cold start on paper (seconds): what this machine cannot measure.
G4DN_BUDGET: tuple[tuple[str, str, float], ...] = (
    ("EC2 StartInstances -> kernel running (stopped instance, EBS root)", "AWS", 35.0),
    ("systemd to docker.service; NVIDIA driver load and GPU init (persistence off)", "host", 10.0),
    ("model sync (warm: manifest + hashes; cold: ~30 MB from S3 in-region)", "measured here", 1.0),
    (
        "engine step: container start, link cached plans (first boot: trtexec, minutes)",
        "paper",
        5.0,
    ),
    ("Triton container start, CUDA context, load 2 TensorRT plans", "paper", 15.0),
    ("backend container start to /ready (imports, OCR models, Triton gRPC)", "measured here", 5.0),
    ("nginx already up; first CloudWatch heartbeat within 60 s", "paper", 0.0),
)


@dataclass(frozen=True)
class BootRun:
    cold_sync_s: float
    warm_sync_s: float
    triton_ready_s: float
    backend_ready_s: float

    @property
    def cold_boot_s(self) -> float:
        return self.cold_sync_s + self.triton_ready_s + self.backend_ready_s

    @property
    def warm_boot_s(self) -> float:
        return self.warm_sync_s + self.triton_ready_s + self.backend_ready_s


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--runs", type=positive_int, default=3, help="boots to time")


def main(args: argparse.Namespace) -> int:
    try:
        runs = run_boot_bench(args.models_dir or default_models_dir(), args.runs)
    except (ManifestError, ModelSyncError, TritonLaunchError, RuntimeError) as exc:
        return fail(str(exc))
    print(render_markdown(runs), end="")
    return 0


def run_boot_bench(models_dir: Path, runs: int) -> list[BootRun]:
    """Time `runs` boots against a moto S3 holding `models_dir`."""
    load_manifest(models_dir)
    with _moto_s3() as s3, tempfile.TemporaryDirectory(prefix="cvstack-boot-") as tmp:
        for path in sorted(models_dir.iterdir()):
            if path.is_file():
                s3.upload_file(str(path), BUCKET, f"{PREFIX}{path.name}")
        return [_boot(s3, Path(tmp) / f"run{index}") for index in range(runs)]


def _boot(s3: S3Client, root: Path) -> BootRun:
    target = root / "models"
    source = f"s3://{BUCKET}/{PREFIX}"
    cold = sync_models(s3, source, target)
    warm = sync_models(s3, source, target)
    if warm.downloaded or not cold.downloaded:
        raise RuntimeError("the warm sync downloaded files again; the sync is broken")
    repository = root / "repository"
    names = render_repository(load_manifest(target), target, repository, "cpu")
    triton = LocalTritonServer(repository, names, root / "triton", ServerAddress.on_free_ports())
    triton_s = triton.start(timeout_s=120)
    try:
        with backend_process(target, triton.address) as backend:
            backend_s = backend.ready_s
    finally:
        triton.stop()
    return BootRun(cold.seconds, warm.seconds, triton_s, backend_s)


@contextlib.contextmanager
def _moto_s3() -> Iterator[S3Client]:
    # moto (the `infra` extra) is not in the backend image; only this benchmark needs it.
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(
        ip_address="127.0.0.1", port=ServerAddress.on_free_ports().http_port
    )
    with contextlib.redirect_stdout(io.StringIO()):  # its start banner would land in the table
        server.start()
    host, port = server.get_host_and_port()
    try:
        s3 = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=f"http://{host}:{port}",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        s3.create_bucket(Bucket=BUCKET)
        yield s3
    finally:
        server.stop()


def render_markdown(runs: list[BootRun]) -> str:
    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.2f}"

    def worst(values: list[float]) -> str:
        return f"{max(values):.2f}"

    rows = [
        ("model sync, first boot (empty folder, all files from S3)", [r.cold_sync_s for r in runs]),
        ("model sync, later boot (nothing changed)", [r.warm_sync_s for r in runs]),
        ("Triton on CPU: start to ready (yolo, yolo_pose)", [r.triton_ready_s for r in runs]),
        ("backend (`cvstack serve`): start to /ready 200", [r.backend_ready_s for r in runs]),
        ("**boot to ready, first boot** (sum)", [r.cold_boot_s for r in runs]),
        ("**boot to ready, later boot** (sum)", [r.warm_boot_s for r in runs]),
    ]
    lines = [
        f"Machine: {describe_machine()}.",
        "",
        f"| step | median s | max s ({len(runs)} runs) |",
        "|---|---|---|",
        *(f"| {name} | {med(values)} | {worst(values)} |" for name, values in rows),
        "",
        "| g4dn.xlarge cold start, on paper | source | s |",
        "|---|---|---|",
        *(f"| {step} | {source} | {seconds:.0f} |" for step, source, seconds in G4DN_BUDGET),
        f"| **total, later boot (cached plans)** | | **{sum(s for *_, s in G4DN_BUDGET):.0f}** |",
        "",
    ]
    return "\n".join(lines)
