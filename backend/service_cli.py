"""`cvstack serve` (the backend alone) and `cvstack demo` (local Triton, watched and restarted
when it exits, + the backend)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

import uvicorn
from pydantic import ValidationError
from uvicorn.config import STARTUP_FAILURE

from backend.api.connection_limits import raise_fd_limit, uvicorn_config
from backend.app import create_app
from backend.cli_support import fail, port_number
from backend.core.config import Settings
from backend.model_prep.manifest import ManifestError, load_manifest
from backend.paths import state_dir
from backend.session.drain import DrainFileError, check_drain_file
from backend.triton_server.install import TritonLaunchError
from backend.triton_server.local_server import LocalTritonServer, ServerAddress
from backend.triton_server.repository import render_repository
from backend.triton_server.watchdog import TritonWatchdog


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `serve` and `demo` commands."""
    serve = subparsers.add_parser("serve", help="run the backend service (settings: CVSTACK_*)")
    serve.add_argument("--host", default=None, help="listen address (CVSTACK_HOST)")
    serve.add_argument("--port", type=port_number, default=None, help="port (CVSTACK_PORT)")
    serve.set_defaults(handler=_serve)

    demo = subparsers.add_parser("demo", help="local Triton on CPU + the backend; Ctrl-C stops all")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=port_number, default=8080)
    demo.add_argument("--triton-grpc-port", type=port_number, default=8001)
    demo.add_argument("--triton-http-port", type=port_number, default=8000)
    demo.add_argument("--triton-metrics-port", type=port_number, default=8002)
    demo.set_defaults(handler=_demo)


def _settings(**overrides: Any) -> Settings:
    values = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**values)


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = _settings(host=args.host, port=args.port)
        check_drain_file(settings.drain_file)
        load_manifest(settings.models_dir)
    except ValidationError as exc:
        return fail(f"invalid settings: {_first_problem(exc)}")
    except (ManifestError, DrainFileError) as exc:
        return fail(str(exc))
    _run_uvicorn(_uvicorn_server(settings))
    return 0


def _demo(args: argparse.Namespace) -> int:
    address = ServerAddress(
        "127.0.0.1", args.triton_http_port, args.triton_grpc_port, args.triton_metrics_port
    )
    try:
        settings = _settings(
            host=args.host,
            port=args.port,
            triton_grpc_url=address.grpc_url,
            triton_metrics_url=address.metrics_url,
        )
        work_dir = state_dir() / "triton"
        repository = work_dir / "model_repository"
        names = render_repository(
            load_manifest(settings.models_dir), settings.models_dir, repository, "cpu"
        )
        triton = LocalTritonServer(repository, names, work_dir, address)
        seconds = triton.start()
    except ValidationError as exc:
        return fail(f"invalid settings: {_first_problem(exc)}")
    except (ManifestError, ValueError, TritonLaunchError) as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130
    server = _uvicorn_server(settings)
    watchdog = TritonWatchdog(triton, on_give_up=lambda _: setattr(server, "should_exit", True))
    try:
        print(
            f"Triton ready in {seconds:.1f} s ({', '.join(names)}) at {address.grpc_url}\n"
            f"Open http://{settings.host}:{settings.port}/ in a browser  "
            f"(WebSocket ws://{settings.host}:{settings.port}/ws/inference, /ready, /metrics)\n"
            "Press Ctrl-C to stop both.",
            flush=True,
        )
        watchdog.start()
        _run_uvicorn(server)
    finally:
        watchdog.stop()
        triton.stop()
        print("Triton stopped.", flush=True)
    if watchdog.failure is not None:
        print(f"error: {watchdog.failure}", file=sys.stderr, flush=True)
        return 1
    return 0


def _uvicorn_server(settings: Settings) -> uvicorn.Server:
    problem = raise_fd_limit(settings.max_connections)
    if problem is not None:
        print(f"warning: {problem}", file=sys.stderr, flush=True)
    return uvicorn.Server(uvicorn_config(create_app(settings), settings))


def _run_uvicorn(server: uvicorn.Server) -> None:
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it handled
        server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"])
    return f"{where}: {problem['msg']}" if where else problem["msg"]
