"""`cvstack triton ...`: render the model repository and run the local CPU Triton server."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from backend.cli_support import fail, port_number, positive_int
from backend.model_prep.manifest import ManifestError, load_manifest
from backend.paths import default_models_dir, state_dir
from backend.triton_server.install import TritonLaunchError
from backend.triton_server.local_server import LocalTritonServer, ServerAddress
from backend.triton_server.repository import FLAVOURS, RenderOptions, render_repository


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `triton` command group."""
    triton = subparsers.add_parser("triton", help="model repository and local Triton server")
    commands = triton.add_subparsers(dest="triton_command", required=True)

    serve = commands.add_parser("serve", help="run the real tritonserver on CPU until Ctrl-C")
    _add_common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    serve.add_argument("--http-port", type=port_number, default=8000)
    serve.add_argument("--grpc-port", type=port_number, default=8001)
    serve.add_argument("--metrics-port", type=port_number, default=8002)
    serve.add_argument(
        "--ready-timeout", type=positive_int, default=120, help="seconds to wait for readiness"
    )
    serve.set_defaults(handler=_serve)

    render = commands.add_parser("render", help="write a model repository without serving it")
    _add_common(render)
    render.add_argument("--flavour", choices=FLAVOURS, default="cpu")
    render.add_argument("--out", type=Path, required=True, help="repository folder to write")
    render.set_defaults(handler=_render)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models-dir", type=Path, default=None, help="prepared models folder")
    parser.add_argument(
        "--model", action="append", dest="models", help="serve only this model (repeatable)"
    )
    parser.add_argument(
        "--cpu-threads", type=int, default=0, help="onnxruntime threads per model (0: automatic)"
    )


def _render(args: argparse.Namespace) -> int:
    models_dir = args.models_dir or default_models_dir()
    try:
        names = render_repository(
            load_manifest(models_dir),
            models_dir,
            args.out,
            args.flavour,
            names=args.models,
            options=RenderOptions(cpu_threads=args.cpu_threads),
        )
    except (ManifestError, ValueError) as exc:
        return fail(str(exc))
    print(f"rendered {args.flavour} repository with {', '.join(names)} at {args.out}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    models_dir = args.models_dir or default_models_dir()
    work_dir = state_dir() / "triton"
    repository = work_dir / "model_repository"
    address = ServerAddress(args.host, args.http_port, args.grpc_port, args.metrics_port)
    try:
        names = render_repository(
            load_manifest(models_dir),
            models_dir,
            repository,
            "cpu",
            names=args.models,
            options=RenderOptions(cpu_threads=args.cpu_threads),
        )
        server = LocalTritonServer(repository, names, work_dir, address)
    except (ManifestError, ValueError, TritonLaunchError) as exc:
        return fail(str(exc))
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, _interrupt) for signum in handled}
    try:
        seconds = server.start(timeout_s=args.ready_timeout)
        print(
            f"Triton ready in {seconds:.1f} s with {', '.join(names)}\n"
            f"  gRPC     {address.grpc_url}\n"
            f"  HTTP     {address.http_url}\n"
            f"  metrics  {address.metrics_url}\n"
            f"  log      {server.log_path}\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        code = server.wait()
        return fail(f"Triton exited unexpectedly with code {code}; see {server.log_path}")
    except TritonLaunchError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        print("stopping Triton...", file=sys.stderr, flush=True)
        return 0
    finally:
        for signum in handled:
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM and SIGHUP take the same clean-up path as Ctrl-C."""
    raise KeyboardInterrupt
