"""The GPU instance's boot jobs under its template role: settings, model sync, backend env and
heartbeat succeed (what it may not do: test_instance_denials.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from backend.instance.backend_env import backend_environment
from backend.instance.boot_report import BootReport, publish
from backend.instance.heartbeat import ACTIVE_SESSIONS, NAMESPACE, beat
from backend.instance.model_sync import sync_models
from backend.instance.settings import (
    FRONTEND_ORIGINS,
    MODELS_S3_URI,
    SESSION_SECRET_ID,
    stack_environment,
)
from backend.model_prep.manifest import (
    Manifest,
    ModelEntry,
    ModelSource,
    TensorSpec,
    save_manifest,
    sha256_of,
)
from lambdas.shared.boot_times import boot_estimate
from lambdas.shared.metrics import DIMENSION
from tests.iam.conftest import Cloud, instance_env_file
from tests.iam.helpers import closed_loopback_host


def upload_models(cloud: Cloud, uri: str, folder: Path) -> None:
    """A one-model store, as `aws s3 sync .cvstack/models <uri>` leaves it (as admin)."""
    (folder / "ocr_det.onnx").write_bytes(b"not really onnx")
    tensor = TensorSpec("x", "TYPE_FP32", (3, -1, -1))
    entry = ModelEntry(
        name="ocr_det",
        task="ocr_det",
        file="ocr_det.onnx",
        sha256=sha256_of(folder / "ocr_det.onnx"),
        source=ModelSource("random", "tests/iam", False),
        inputs=(tensor,),
        outputs=(tensor,),
        output_format="ocr_det_map",
    )
    save_manifest(Manifest({"ocr_det": entry}), folder)
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    s3 = cloud.admin.client("s3")
    for path in folder.iterdir():
        s3.upload_file(str(path), bucket, f"{prefix}{path.name}")


def test_the_boot_jobs_run_under_the_instance_role(cloud: Cloud, tmp_path: Path) -> None:
    """settings (ssm:GetParameter), model sync (s3:ListBucket + GetObject under models/),
    backend env (secretsmanager:GetSecretValue) and heartbeat (cloudwatch:PutMetricData),
    fed by the user data and the settings parameter exactly as the template wires them."""
    role = cloud.instance_session
    settings = stack_environment(
        instance_env_file(cloud, tmp_path), role.client("ssm"), tmp_path / "no-aws.env"
    )
    (tmp_path / "store").mkdir()
    upload_models(cloud, settings[MODELS_S3_URI], tmp_path / "store")

    report = sync_models(role.client("s3"), settings[MODELS_S3_URI], tmp_path / "models")
    assert report.downloaded == ["ocr_det.onnx"] and report.swapped

    values = backend_environment(
        role.client("secretsmanager"), settings[SESSION_SECRET_ID], settings[FRONTEND_ORIGINS]
    )
    expected = cloud.admin.client("secretsmanager").get_secret_value(
        SecretId=settings[SESSION_SECRET_ID]
    )
    assert values["CVSTACK_SESSION_TOKEN_SECRET"] == expected["SecretString"]

    now = datetime.now(UTC)
    beat(
        role.client("cloudwatch"),
        cloud.instance_id,
        backend_url=f"http://{closed_loopback_host()}",
        triton_metrics_url=None,
        state_file=tmp_path / "heartbeat.json",
        now=now,
    )
    points = cloud.admin.client("cloudwatch").get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=ACTIVE_SESSIONS,
        Dimensions=[{"Name": "InstanceId", "Value": cloud.instance_id}],
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=5),
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    assert [p["Maximum"] for p in points] == [0.0]


def test_the_boot_report_publishes_under_the_instance_role(cloud: Cloud) -> None:
    """BootSeconds goes out under the namespace-bound PutMetricData the heartbeat uses; the
    status Lambda's role reads it back as its estimate."""
    ready_at = datetime.now(UTC)
    boot = BootReport(ready_at - timedelta(seconds=44), ready_at)
    publish(cloud.instance_session.client("cloudwatch"), boot, cloud.instance_id, None)
    estimate = boot_estimate(
        cloud.lambda_session("status").client("cloudwatch"),
        (DIMENSION, cloud.instance_id),
        default_s=120,
        now=ready_at + timedelta(minutes=1),
    )
    assert (estimate.seconds, estimate.samples, estimate.problem) == (44, 1, None)
