"""`cvstack instance ...`: the GPU instance's boot-time and periodic jobs (systemd/ runs them)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from backend.cli_support import fail, port_number, positive_float, positive_int
from backend.instance import (
    backend_env,
    boot_report,
    engines,
    fleet_agent,
    heartbeat,
    imds,
    model_sync,
    nginx_config,
    settings,
)
from backend.model_prep.manifest import ManifestError, load_manifest
from backend.triton_server.repository import FLAVOURS, Flavour


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `instance` command group."""
    instance = subparsers.add_parser("instance", help="jobs the GPU instance runs at boot")
    commands = instance.add_subparsers(dest="instance_command", required=True)
    region = os.environ.get("CVSTACK_AWS_REGION")

    stack = commands.add_parser(
        "settings", help="read the stack's settings from SSM and write /run/cvstack/stack.env"
    )
    stack.add_argument("--instance-env", type=Path, default=settings.INSTANCE_ENV)
    stack.add_argument("--aws-env", type=Path, default=settings.AWS_ENV)
    stack.add_argument("--out", type=Path, default=settings.STACK_ENV)
    stack.set_defaults(handler=_settings)

    sync = commands.add_parser("sync-models", help="pull changed models from S3, verify, swap")
    sync.add_argument("--source", default=os.environ.get("CVSTACK_MODELS_S3_URI"))
    sync.add_argument("--target", type=Path, default=Path("/var/lib/cvstack/models"))
    sync.add_argument("--region", default=region)
    sync.add_argument(
        "--repository",
        type=Path,
        default=None,
        help="then render the model repository Triton serves here, as `repository` does (one "
        "container start at boot instead of two)",
    )
    sync.add_argument(
        "--flavour",
        choices=FLAVOURS,
        default=None,
        help="the repository's flavour (with --repository)",
    )
    sync.set_defaults(handler=_sync)

    repository = commands.add_parser(
        "repository",
        help="render the model repository Triton serves (gpu: plus its TensorRT engine jobs)",
    )
    repository.add_argument(
        "--flavour",
        choices=FLAVOURS,
        required=True,
        help="the Triton image's flavour (TRITON_FLAVOUR in ami/versions.env)",
    )
    repository.add_argument("--models-dir", type=Path, default=Path("/var/lib/cvstack/models"))
    repository.add_argument("--out", type=Path, default=Path("/var/lib/cvstack/repository"))
    repository.set_defaults(handler=_repository)

    env = commands.add_parser(
        "backend-env", help="write the backend's production env file and nginx's origin secret"
    )
    env.add_argument("--secret-id", default=os.environ.get("CVSTACK_SESSION_SECRET_ID"))
    env.add_argument(
        "--origin-secret-id",
        default=os.environ.get("CVSTACK_ORIGIN_SECRET_ID"),
        help="the secret CloudFront sends to the instance (CVSTACK_ORIGIN_SECRET_ID)",
    )
    env.add_argument(
        "--origin-secret-dir",
        type=Path,
        default=nginx_config.ORIGIN_SECRET_DIR,
        help=f"where {backend_env.ORIGIN_SECRET_MAP} goes (nginx includes it)",
    )
    env.add_argument(
        "--nginx-group",
        default=backend_env.NGINX_GROUP,
        help="the group of nginx's workers, which may read the map file",
    )
    env.add_argument(
        "--allowed-origins",
        default=os.environ.get("CVSTACK_FRONTEND_ORIGINS"),
        help="comma-separated origins (CVSTACK_FRONTEND_ORIGINS)",
    )
    env.add_argument("--out", type=Path, default=Path("/run/cvstack/backend.env"))
    env.add_argument("--region", default=region)
    env.set_defaults(handler=_backend_env)

    beat = commands.add_parser("heartbeat", help="publish one minute of activity to CloudWatch")
    beat.add_argument("--backend-url", default="http://127.0.0.1:8080")
    beat.add_argument("--triton-metrics-url", default="http://127.0.0.1:8002/metrics")
    beat.add_argument(
        "--state-file", type=Path, default=Path("/var/lib/cvstack/heartbeat-state.json")
    )
    _publisher_arguments(beat, region, "also publish SessionLoad for this Auto Scaling group")
    beat.set_defaults(handler=_heartbeat)

    _register_boot_report(commands, region)
    _register_fleet_agent(commands, region)

    nginx = commands.add_parser("nginx-config", help="render the nginx site for given ports")
    nginx.add_argument(
        "--origin-port", type=port_number, default=80, help="CloudFront's origin listener"
    )
    nginx.add_argument("--https-port", type=port_number, default=443)
    nginx.add_argument("--backend-port", type=port_number, default=8080)
    nginx.add_argument("--max-body-bytes", type=positive_int, default=2_000_000)
    nginx.add_argument(
        "--origin-secret-dir",
        type=Path,
        default=nginx_config.ORIGIN_SECRET_DIR,
        help="where the boot writes origin-secret.map (the secret CloudFront sends)",
    )
    for limit in dataclasses.fields(nginx_config.ClientLimits):  # --header-timeout-s 10 ...
        nginx.add_argument(
            f"--{limit.name.replace('_', '-')}",
            type=positive_int,
            default=limit.default,
            help=f"client limit (default {limit.default}); see docs/security.md",
        )
    nginx.add_argument("--out", type=Path, required=True)
    nginx.set_defaults(handler=_nginx_config)


def _publisher_arguments(
    parser: argparse.ArgumentParser, region: str | None, fleet_help: str
) -> None:
    """What a job publishing to CloudWatch takes: the instance (else IMDS's), the region and,
    in fleet mode, the group (else cvstack-settings' stack.env value)."""
    parser.add_argument("--instance-id", default=os.environ.get("CVSTACK_INSTANCE_ID"))
    parser.add_argument("--region", default=region)
    parser.add_argument(
        "--fleet-group-name",
        default=os.environ.get(settings.FLEET_GROUP_NAME) or None,
        help=f"fleet mode: {fleet_help} ({settings.FLEET_GROUP_NAME})",
    )


def _register_boot_report(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], region: str | None
) -> None:
    report = commands.add_parser(
        "boot-report",
        help="time this boot (start request to the backend's first /ready) and publish it",
    )
    report.add_argument("--backend-url", default="http://127.0.0.1:8080")
    report.add_argument("--timeout-s", type=positive_float, default=900.0)
    report.add_argument(
        "--uptime-file",
        type=Path,
        default=boot_report.UPTIME,
        help="the kernel's uptime (tells this boot's request from an older one)",
    )
    _publisher_arguments(report, region, "publish for this Auto Scaling group")
    report.set_defaults(handler=_boot_report)


def _register_fleet_agent(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], region: str | None
) -> None:
    agent = commands.add_parser(
        "fleet-agent",
        help="fleet mode: the launch hook once the backend is ready, scale-in protection while "
        "sessions run, the drain when the instance leaves (runs until stopped; settings from "
        "CVSTACK_FLEET_* and CVSTACK_DRAIN_LIMIT_S)",
    )
    agent.add_argument("--backend-url", default="http://127.0.0.1:8080")
    agent.add_argument("--drain-file", type=Path, default=fleet_agent.DRAIN_FILE)
    agent.add_argument("--poll-s", type=positive_float, default=fleet_agent.POLL_S)
    agent.add_argument(
        "--imds-url",
        default=None,
        help=f"default: {imds.IMDS_ENDPOINT_VARIABLE} when set, else {imds.IMDS_URL}",
    )
    agent.add_argument("--region", default=region)
    agent.set_defaults(handler=_fleet_agent)


def _sync(args: argparse.Namespace) -> int:
    if not args.source:
        return fail(
            "no model store: pass --source s3://bucket/models/ or set CVSTACK_MODELS_S3_URI"
        )
    if args.repository is not None and args.flavour is None:
        return fail("--repository needs --flavour cpu|gpu (TRITON_FLAVOUR in ami/versions.env)")
    try:
        report = model_sync.sync_models(
            boto3.client("s3", region_name=args.region), args.source, args.target
        )
    except model_sync.ModelSyncError as exc:
        return fail(str(exc))
    print(report.summary())
    if args.repository is None:
        return 0
    return _render(args.target, args.repository, args.flavour)


def _settings(args: argparse.Namespace) -> int:
    try:
        region = settings.bootstrap(args.instance_env)[settings.REGION]
        values = settings.stack_environment(
            args.instance_env, boto3.client("ssm", region_name=region), args.aws_env
        )
        settings.write_stack_env(values, args.out)
    except settings.SettingsError as exc:
        return fail(str(exc))
    print(f"settings of {values[settings.PARAMETER]} written to {args.out}")
    return 0


def _repository(args: argparse.Namespace) -> int:
    return _render(args.models_dir, args.out, args.flavour)


def _render(models_dir: Path, out: Path, flavour: Flavour) -> int:
    try:
        models = engines.write_repository(load_manifest(models_dir), models_dir, out, flavour)
    except (ManifestError, ValueError) as exc:
        return fail(str(exc))
    print(f"{flavour} repository at {out} with {len(models)} models")
    return 0


def _backend_env(args: argparse.Namespace) -> int:
    if not args.secret_id or not args.origin_secret_id or not args.allowed_origins:
        return fail(
            "CVSTACK_SESSION_SECRET_ID, CVSTACK_ORIGIN_SECRET_ID and CVSTACK_FRONTEND_ORIGINS "
            "must be set (cvstack-settings writes them to /run/cvstack/stack.env)"
        )
    try:
        fleet = settings.fleet_settings(os.environ)
    except settings.SettingsError as exc:
        return fail(str(exc))
    secrets = boto3.client("secretsmanager", region_name=args.region)
    try:
        values = backend_env.backend_environment(
            secrets,
            args.secret_id,
            args.allowed_origins,
            max_wait_s=os.environ.get(settings.MAX_WAIT_S) or None,
            drain_file=fleet_agent.DRAIN_FILE if fleet else None,
        )
        origin_secret = backend_env.origin_secret(secrets, args.origin_secret_id)
        origin_map = backend_env.write_origin_secret_map(
            origin_secret, args.origin_secret_dir, args.nginx_group
        )
        backend_env.write_env_file(values, args.out)
    except (backend_env.BackendEnvError, OSError) as exc:
        return fail(str(exc))
    print(f"backend environment written to {args.out}, origin secret to {origin_map}")
    return 0


def _heartbeat(args: argparse.Namespace) -> int:
    try:
        instance_id = args.instance_id or heartbeat.instance_id_from_imds()
    except OSError as exc:
        return fail(f"cannot read the instance id from IMDS ({exc}); pass --instance-id")
    data = heartbeat.beat(
        boto3.client("cloudwatch", region_name=args.region),
        instance_id,
        backend_url=args.backend_url,
        triton_metrics_url=args.triton_metrics_url,
        state_file=args.state_file,
        group_name=args.fleet_group_name,
    )
    print(", ".join(f"{d['MetricName']}={d.get('Value', d.get('Counts'))}" for d in data))
    return 0


def _boot_report(args: argparse.Namespace) -> int:
    """0 once published, or when this boot is not one to time (it says why); 1 on failures."""
    try:
        instance_id = args.instance_id or heartbeat.instance_id_from_imds()
        report = boot_report.time_boot(
            imds.imds_base_url(),
            args.backend_url,
            timeout_s=args.timeout_s,
            uptime=args.uptime_file,
        )
    except boot_report.BootNotTimedError as reason:
        print(f"boot not timed: {reason}")
        return 0
    except TimeoutError as exc:
        return fail(f"boot not timed: {exc}")
    except OSError as exc:
        return fail(f"cannot read this instance's metadata from IMDS ({exc})")
    try:
        boot_report.publish(
            boto3.client("cloudwatch", region_name=args.region),
            report,
            instance_id,
            args.fleet_group_name,
        )
    except (ClientError, BotoCoreError) as exc:
        return fail(f"boot took {report.seconds:.1f} s but could not be published: {exc}")
    print(f"boot took {report.seconds:.1f} s (requested {report.requested_at.isoformat()})")
    return 0


def _fleet_agent(args: argparse.Namespace) -> int:
    try:
        fleet = settings.fleet_settings(os.environ)
    except settings.SettingsError as exc:
        return fail(str(exc))
    if fleet is None:
        return fail(
            f"not in fleet mode: {settings.FLEET_GROUP_NAME} is not set (cvstack-settings writes "
            "it to /run/cvstack/stack.env when cdk.json's mode is fleet)"
        )
    if not args.region:
        return fail("no region: pass --region or set CVSTACK_AWS_REGION")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    agent = fleet_agent.FleetAgent(
        imds_url=imds.imds_base_url(args.imds_url),
        backend_url=args.backend_url,
        drain_file=args.drain_file,
        autoscaling=boto3.client(
            "autoscaling",
            region_name=args.region,
            config=Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard"}),
        ),
        group_name=fleet.group_name,
        hook_name=fleet.hook_name,
        drain_limit_s=fleet.drain_limit_s,
        launch_hook_name=fleet.launch_hook_name,
        poll_s=args.poll_s,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):  # PID 1 in its container: no default
        signal.signal(signum, lambda *_: stop.set())
    agent.run(stop)
    print("fleet agent stopped", file=sys.stderr)
    return 0


def _nginx_config(args: argparse.Namespace) -> int:
    try:
        limits = nginx_config.ClientLimits(
            **{
                limit.name: getattr(args, limit.name)
                for limit in dataclasses.fields(nginx_config.ClientLimits)
            }
        )
    except ValueError as invalid:
        return fail(str(invalid))
    site = nginx_config.NginxSite(
        origin_port=args.origin_port,
        https_port=args.https_port,
        backend_port=args.backend_port,
        max_body_bytes=args.max_body_bytes,
        origin_secret_dir=args.origin_secret_dir,
        limits=limits,
    )
    args.out.write_text(nginx_config.render_nginx_site(site))
    print(f"nginx site written to {args.out}", file=sys.stderr)  # --out /dev/stdout stays clean
    return 0
