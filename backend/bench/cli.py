"""`cvstack bench ...`: run a benchmark and print its markdown table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backend.bench import (
    boot_bench,
    coldstart_bench,
    hostile_cli,
    motion_bench,
    nms_bench,
    overlay_report,
    overlay_runner,
    postprocess_bench,
    tracking_bench,
    triton_bench,
    ws_bench,
)
from backend.bench.bench_models import BenchModels, resolve_bench_models
from backend.bench.machine import describe_machine
from backend.cli_support import fail, positive_float, positive_int
from backend.model_prep.manifest import ManifestError
from backend.model_prep.yolo_export import ExportError
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

    stream = commands.add_parser(
        "stream",
        help="WebSocket sessions end to end through the stack, then post-processing by scene",
    )
    stream.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="prepared models to run (default: real weights, prepared when needed)",
    )
    stream.add_argument("--frames", type=positive_int, default=100, help="frames per latency row")
    stream.add_argument("--overload-seconds", type=positive_int, default=30)
    stream.add_argument("--overload-fps", type=positive_int, default=30)
    stream.add_argument("--sessions", type=positive_int, default=8)
    stream.add_argument("--concurrent-seconds", type=positive_int, default=20)
    stream.add_argument(
        "--postprocess-repeats", type=positive_int, default=300, help="timed frames per scene"
    )
    stream.set_defaults(handler=_stream)

    postprocess = commands.add_parser(
        "postprocess", help="post-processing and result size for scenes of 1, 10 and 50 people"
    )
    postprocess.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="prepared models to run (default: real weights at 640 px, prepared when needed)",
    )
    postprocess.add_argument("--repeats", type=positive_int, default=300)
    postprocess.set_defaults(handler=_postprocess)

    motion = commands.add_parser("motion", help="Farneback vs DIS optical flow")
    motion.add_argument("--repeats", type=positive_int, default=100)
    motion.set_defaults(handler=_motion)

    nms = commands.add_parser("nms", help="class-aware NMS on 1 to 300 candidates")
    nms.add_argument("--repeats", type=positive_int, default=2000)
    nms.set_defaults(handler=_nms)

    tracking = commands.add_parser(
        "tracking", help="id switches of the baseline and current tracker at 2, 5, 15 results/s"
    )
    tracking.set_defaults(handler=_tracking)

    overlay = commands.add_parser(
        "overlay",
        help="the page's drawn boxes against known positions in real Chromium, per mode and rate",
    )
    overlay.add_argument(
        "--rates", default="2,5,15", help="backend caps in results/s (CVSTACK_MAX_RESULTS_PER_S)"
    )
    overlay.add_argument("--modes", default="sync,live", help="the page's display modes")
    overlay.add_argument(
        "--seconds", type=positive_float, default=20.0, help="collected per mode and rate"
    )
    overlay.add_argument("--warmup", type=float, default=3.0, help="seconds before collecting")
    overlay.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    overlay.add_argument(
        "--page-dir",
        type=Path,
        default=None,
        help="measure the page in this folder (e.g. another branch's frontend/) instead of ours",
    )
    overlay.set_defaults(handler=_overlay)

    coldstart = commands.add_parser(
        "coldstart",
        help="the page's cold start in headless Chromium: its own detection, then the hand-over",
    )
    coldstart.add_argument("--models-dir", type=Path, default=None)
    coldstart.add_argument(
        "--boot", type=positive_float, default=8.0, help="seconds the simulated GPU boot lasts"
    )
    coldstart.add_argument("--runs", type=positive_int, default=3, help="cold starts to measure")
    coldstart.add_argument(
        "--photo", type=Path, default=None, help="the camera's picture (default: bus.jpg)"
    )
    coldstart.set_defaults(handler=_coldstart)

    boot = commands.add_parser("boot", help="the boot chain step by step, before and after")
    boot_bench.add_arguments(boot)
    boot.set_defaults(handler=boot_bench.main)

    hostile = commands.add_parser(
        "hostile", help="attacks on the local stack while a normal session measures itself"
    )
    hostile_cli.add_arguments(hostile)
    hostile.set_defaults(handler=hostile_cli.main)


def _triton(args: argparse.Namespace) -> int:
    try:
        result = triton_bench.run_triton_bench(
            args.models_dir or default_models_dir(),
            repeats=args.repeats,
            starts=args.starts,
            concurrency=args.concurrency,
        )
    except (ManifestError, TritonLaunchError, ValueError) as exc:
        return fail(str(exc))
    print(triton_bench.render_markdown(result), end="")
    return 0


def _stream(args: argparse.Namespace) -> int:
    try:
        models = _bench_models(args.models_dir, 320)
        result = ws_bench.run_ws_bench(
            models,
            frames=args.frames,
            overload_s=args.overload_seconds,
            overload_fps=args.overload_fps,
            sessions=args.sessions,
            concurrent_s=args.concurrent_seconds,
        )
        post = postprocess_bench.run_postprocess_bench(
            _bench_models(args.models_dir, postprocess_bench.POSTPROCESS_IMGSZ),
            args.postprocess_repeats,
        )
    except (ManifestError, ExportError, TritonLaunchError, ValueError, RuntimeError) as exc:
        return fail(str(exc))
    print(ws_bench.render_markdown(result), end="")
    print()
    print(postprocess_bench.render_markdown(post), end="")
    return 0


def _postprocess(args: argparse.Namespace) -> int:
    try:
        models = _bench_models(args.models_dir, postprocess_bench.POSTPROCESS_IMGSZ)
        result = postprocess_bench.run_postprocess_bench(models, args.repeats)
    except (ManifestError, ExportError, ValueError, RuntimeError) as exc:
        return fail(str(exc))
    print(postprocess_bench.render_markdown(result), end="")
    return 0


def _overlay(args: argparse.Namespace) -> int:
    try:
        options = overlay_runner.OverlayOptions(
            modes=overlay_runner.parse_modes(args.modes),
            rates=overlay_runner.parse_rates(args.rates),
            seconds=args.seconds,
            warmup_s=args.warmup,
            page_dir=args.page_dir,
        )
        result = overlay_runner.run_overlay_bench(options)
    except (ManifestError, TritonLaunchError, ValueError, RuntimeError) as exc:
        return fail(str(exc))
    machine = describe_machine()
    if args.json is not None:
        args.json.write_text(overlay_runner.as_json(result, machine, sys.argv) + "\n")
    print(overlay_report.render_markdown(result.runs, machine, result.skipped), end="")
    return 0


def _coldstart(args: argparse.Namespace) -> int:
    models_dir = args.models_dir or default_models_dir()
    try:
        runs = coldstart_bench.run_coldstart_bench(
            models_dir,
            args.photo or coldstart_bench.sample_photo(),
            boot_s=args.boot,
            runs=args.runs,
        )
    except (ManifestError, TritonLaunchError, ValueError, RuntimeError) as exc:
        return fail(str(exc))
    print(coldstart_bench.render_markdown(runs, describe_machine(), args.boot), end="")
    return 0


def _bench_models(models_dir: Path | None, imgsz: int) -> BenchModels:
    """The models to bench; says on stderr which weights they have, loudly when random."""
    models = resolve_bench_models(models_dir, imgsz)
    print(f"{models.models_dir}: {models.describe()}", file=sys.stderr)
    if warning := models.warning():
        print(warning.replace("**", ""), file=sys.stderr)
    return models


def _motion(args: argparse.Namespace) -> int:
    print(motion_bench.render_markdown(*motion_bench.run_motion_bench(args.repeats)), end="")
    return 0


def _nms(args: argparse.Namespace) -> int:
    print(nms_bench.render_markdown(*nms_bench.run_nms_bench(args.repeats)), end="")
    return 0


def _tracking(args: argparse.Namespace) -> int:
    print(tracking_bench.render_markdown(*tracking_bench.run_tracking_bench()), end="")
    return 0
