"""Find the real `tritonserver` binary and Python backend shipped in the nvidia-pytriton wheel."""

from __future__ import annotations

import importlib.util
import platform
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path


class TritonLaunchError(RuntimeError):
    """Something a user can fix stops the local Triton server; the message says what."""


@dataclass(frozen=True)
class TritonInstall:
    """Paths inside the nvidia-pytriton wheel that a Triton launch needs."""

    binary: Path
    python_backend_dir: Path  # libtriton_python.so + triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub for the running Python
    libs_dir: Path
    caches_dir: Path

    @classmethod
    def locate(cls, python_version: tuple[int, int] | None = None) -> TritonInstall:
        """Locate the wheel's files for this interpreter, or say how to get them."""
        if platform.system() != "Linux" or platform.machine() != "x86_64":
            raise TritonLaunchError(
                f"the local Triton server needs Linux x86_64 (this is {platform.system()} "
                f"{platform.machine()}); use the GPU instance or the NGC Triton container"
            )
        spec = importlib.util.find_spec("pytriton")
        if spec is None or spec.origin is None:
            raise TritonLaunchError(
                "nvidia-pytriton is not installed, so there is no local tritonserver; "
                "run `make install` (or `pip install -e '.[triton-local]'`)"
            )
        site = Path(spec.origin).parent.parent
        server_dir = site / "pytriton" / "tritonserver"
        major, minor = python_version or sys.version_info[:2]
        stubs = server_dir / "python_backend_stubs"
        stub = stubs / f"{major}.{minor}" / "triton_python_backend_stub"
        if not stub.is_file():
            available = sorted(p.name for p in stubs.iterdir()) if stubs.is_dir() else []
            raise TritonLaunchError(
                f"Python {major}.{minor} is not supported by the Triton Python backend in "
                f"nvidia-pytriton (it ships stubs for {', '.join(available) or 'none'}); "
                "recreate .venv with one of those, e.g. python3.11"
            )
        install = cls(
            binary=server_dir / "bin" / "tritonserver",
            python_backend_dir=server_dir / "backends" / "python",
            stub=stub,
            libs_dir=site / "nvidia_pytriton.libs",
            caches_dir=server_dir / "caches",
        )
        for path in (install.binary, install.python_backend_dir, install.libs_dir):
            if not path.exists():
                raise TritonLaunchError(
                    f"{path} is missing from the nvidia-pytriton install; reinstall it with "
                    "`pip install --force-reinstall nvidia-pytriton==0.7.0`"
                )
        return install

    def prepare_backend_dir(self, backends_root: Path) -> Path:
        """Assemble `<root>/python/` as Triton expects it; returns the backend directory."""
        python_dir = backends_root / "python"
        python_dir.mkdir(parents=True, exist_ok=True)
        sources = [
            self.python_backend_dir / "libtriton_python.so",
            self.python_backend_dir / "triton_python_backend_utils.py",
            self.stub,
        ]
        for source in sources:
            target = python_dir / source.name
            if not target.exists() or target.stat().st_size != source.stat().st_size:
                shutil.copy2(source, target)
        return backends_root

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        """Process environment: the wheel's libraries and this interpreter first.

        The stub embeds Python and must load the same libpython as the running venv.
        """
        env = dict(base)
        lib_dirs = [str(self.libs_dir), str(sysconfig.get_config_var("LIBDIR"))]
        if env.get("LD_LIBRARY_PATH"):
            lib_dirs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = ":".join(lib_dirs)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        return env
