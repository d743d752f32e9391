"""Render a Triton model repository from the manifest and `triton/config.pbtxt.j2`.

Layout written for each model:
    <repo>/<name>/config.pbtxt
    <repo>/<name>/1/model.onnx   (cpu: link to the prepared file; gpu: the ONNX to build from)
    <repo>/<name>/1/model.py     (cpu only: triton/python_backend/model.py)
The gpu flavour expects `1/model.plan`, built from `model.onnx` on the instance.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jinja2

from backend.model_prep.manifest import Manifest, verify_files
from backend.paths import TRITON_DIR
from backend.triton_server.contract import BatchingPolicy, ModelContract, contract_for

Flavour = Literal["cpu", "gpu"]
FLAVOURS: tuple[Flavour, ...] = ("cpu", "gpu")
TEMPLATE_NAME = "config.pbtxt.j2"
PYTHON_MODEL = TRITON_DIR / "python_backend" / "model.py"


@dataclass(frozen=True)
class RenderOptions:
    """How to run each model instance; never changes the contract."""

    instances: int = 1
    cpu_threads: int = 0  # 0: onnxruntime decides


def render_config(
    contract: ModelContract, flavour: Flavour, options: RenderOptions | None = None
) -> str:
    """The `config.pbtxt` text of one model in one flavour."""
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {flavour!r}; choose one of {', '.join(FLAVOURS)}")
    opts = options or RenderOptions()
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TRITON_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    text = environment.get_template(TEMPLATE_NAME).render(
        name=contract.name,
        flavour=flavour,
        max_batch_size=contract.max_batch_size,
        inputs=contract.inputs,
        outputs=contract.outputs,
        dynamic_batching=contract.dynamic_batching,
        instances=opts.instances,
        cpu_threads=opts.cpu_threads,
    )
    return text.strip() + "\n"


def render_repository(
    manifest: Manifest,
    models_dir: Path,
    target: Path,
    flavour: Flavour,
    *,
    names: list[str] | None = None,
    policy: BatchingPolicy | None = None,
    options: RenderOptions | None = None,
) -> list[str]:
    """Write a model repository for the Triton-served models; returns the model names.

    The target folder is replaced, so a stale model never lingers in it.
    """
    selected = names or [name for name, e in manifest.models.items() if e.served_by_triton]
    if not selected:
        raise ValueError(
            "the manifest has no model that Triton serves; run `cvstack models prepare`"
        )
    verify_files(manifest, models_dir, selected)
    if target.exists():
        shutil.rmtree(target)
    for name in selected:
        entry = manifest.entry(name)
        model_dir = target / name
        version_dir = model_dir / "1"
        version_dir.mkdir(parents=True)
        config = render_config(contract_for(entry, policy, served_as=name), flavour, options)
        (model_dir / "config.pbtxt").write_text(config)
        _link_or_copy((models_dir / entry.file).resolve(), version_dir / "model.onnx")
        if flavour == "cpu":
            shutil.copy2(PYTHON_MODEL, version_dir / "model.py")
    return selected


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
