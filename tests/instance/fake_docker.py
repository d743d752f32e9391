"""A stand-in `docker` for the image's scripts where the real one would need the GPU or a
registry (tests/instance/test_scripts.py). It runs each container's command on this machine:
`-v HOST:CONTAINER` mounts become path rewrites (also of `-e NAME=VALUE`), the image's tools map
to stand-ins, and a detached `tritonserver` becomes a tiny KServe v2 HTTP server that computes
the smoke model (ami/smoke/model.onnx) with onnxruntime. Configured by the JSON file in
$FAKE_DOCKER_CONFIG:

    log       file that gets one line per call
    images    image -> {"tool in the image": "command here"} (tritonserver: "serve")
    mode      "" | "exits" (tritonserver dies at once) | "wrong" (answers x + 2)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

SMOKE_MODEL = Path(__file__).resolve().parents[2] / "ami" / "smoke" / "model.onnx"
VALUE_OPTIONS = {"-v", "-e", "--name", "--network", "--user", "--gpus", "--env-file"}


def main(argv: list[str]) -> int:
    config = json.loads(Path(os.environ["FAKE_DOCKER_CONFIG"]).read_text())
    with Path(config["log"]).open("a") as log:
        log.write(" ".join(argv) + "\n")
    state = Path(config["log"]).with_suffix(".pid")
    command = argv[0]
    if command == "run":
        return run(argv[1:], config, state)
    if command == "inspect":  # --format '{{.State.Running}}' NAME
        print("true" if _alive(state) else "false")
        return 0
    if command == "logs":
        print("stand-in tritonserver log")
        return 0
    if command == "rm":
        if _alive(state):
            os.kill(int(state.read_text()), signal.SIGTERM)
        state.unlink(missing_ok=True)
        return 0
    print(f"stand-in docker: unexpected {argv}", file=sys.stderr)
    return 2


def run(args: list[str], config: dict[str, Any], state: Path) -> int:
    mounts: dict[str, str] = {}
    env: dict[str, str] = {}
    detach = False
    while args[0].startswith("-"):
        option = args.pop(0)
        if option in ("-d", "--detach"):
            detach = True
        elif option in VALUE_OPTIONS:
            value = args.pop(0)
            if option == "-v":
                host, container = value.split(":")[:2]
                mounts[container] = host
            elif option == "-e" and "=" in value:
                name, _, setting = value.partition("=")
                env[name] = setting
    image, tool, *rest = args
    tools: dict[str, str] = config["images"][image]
    rest = [_rewrite(arg, mounts) for arg in rest]
    if tools[tool] == "serve":
        if config.get("mode") == "exits":
            state.write_text("999999")  # no such process: "not running"
            return 0
        port = next(int(a.split("=")[1]) for a in rest if a.startswith("--http-port="))
        child = subprocess.Popen(
            [sys.executable, __file__, "serve", str(port), config.get("mode", "")],
            start_new_session=True,
        )
        state.write_text(str(child.pid))
        print("stand-in-container-id")
        return 0
    command = [_rewrite(tools[tool], mounts), *rest]
    if detach:
        raise AssertionError("only tritonserver runs detached")
    settings = {name: _rewrite(value, mounts) for name, value in env.items()}
    return subprocess.run(command, env={**os.environ, **settings}, check=False).returncode


def _rewrite(arg: str, mounts: dict[str, str]) -> str:
    for container, host in sorted(mounts.items(), key=lambda m: -len(m[0])):
        arg = arg.replace(container, host)
    return arg


def _alive(state: Path) -> bool:
    try:
        os.kill(int(state.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def serve(port: int, mode: str) -> None:
    """Ready after a second, like a server loading its model; then KServe v2 inference."""
    session = onnxruntime.InferenceSession(str(SMOKE_MODEL))
    ready_at = time.monotonic() + 1.0

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ready = self.path == "/v2/health/ready" and time.monotonic() > ready_at
            self._reply(200 if ready else 503, b"")

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            [tensor] = body["inputs"]
            assert self.path == "/v2/models/smoke/infer" and tensor["datatype"] == "FP32"
            x = np.array(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
            [y] = session.run(None, {tensor["name"]: x})
            if mode == "wrong":
                y = y + 1
            answer = {"outputs": [{"name": "y", "datatype": "FP32", "shape": list(y.shape),
                                   "data": y.ravel().tolist()}]}  # fmt: skip
            self._reply(200, json.dumps(answer).encode())

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(main(sys.argv[1:]))
