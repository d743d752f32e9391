"""Read an ONNX file's tensors and metadata, and work out a YOLO export's calling contract."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import TensorProto

from backend.model_prep.manifest import (
    COCO_KEYPOINTS,
    COCO_SKELETON,
    KeypointLayout,
    ModelEntry,
    ModelSource,
    OutputFormat,
    TensorSpec,
)

YoloTask = Literal["detect", "pose"]

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

TRITON_DTYPES: dict[int, str] = {
    TensorProto.FLOAT: "TYPE_FP32",
    TensorProto.FLOAT16: "TYPE_FP16",
    TensorProto.BFLOAT16: "TYPE_BF16",
    TensorProto.DOUBLE: "TYPE_FP64",
    TensorProto.INT8: "TYPE_INT8",
    TensorProto.INT16: "TYPE_INT16",
    TensorProto.INT32: "TYPE_INT32",
    TensorProto.INT64: "TYPE_INT64",
    TensorProto.UINT8: "TYPE_UINT8",
    TensorProto.UINT16: "TYPE_UINT16",
    TensorProto.UINT32: "TYPE_UINT32",
    TensorProto.UINT64: "TYPE_UINT64",
    TensorProto.BOOL: "TYPE_BOOL",
    TensorProto.STRING: "TYPE_STRING",
}

_BOX_VALUES = 4  # raw head: cx, cy, w, h before the class scores
_END2END_VALUES = 6  # end-to-end rows: x1, y1, x2, y2, score, class


@dataclass(frozen=True)
class YoloGraph:
    """What a YOLO ONNX export expects and returns; `to_entry` adds where the file came from."""

    name: str
    task: YoloTask
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    output_format: OutputFormat
    input_size: int
    batch: int | None
    class_names: tuple[str, ...]
    keypoints: KeypointLayout | None

    def to_entry(self, file: str, sha256: str, source: ModelSource) -> ModelEntry:
        return ModelEntry(
            name=self.name,
            task=self.task,
            file=file,
            sha256=sha256,
            source=source,
            inputs=self.inputs,
            outputs=self.outputs,
            output_format=self.output_format,
            input_size=self.input_size,
            batch=self.batch,
            class_names=self.class_names,
            keypoints=self.keypoints,
        )


def load_onnx(path: Path) -> onnx.ModelProto:
    """The graph and metadata of an ONNX file, without its external weights."""
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends with no common base
        raise ValueError(f"{path} is not a readable ONNX file ({exc}); re-export it") from exc


def onnx_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The model's `metadata_props` as a dict (ultralytics stores `names`, `imgsz`, ... here)."""
    return {prop.key: prop.value for prop in model.metadata_props}


def tensor_specs(
    model: onnx.ModelProto, where: str
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Input and output specs, batch dimension dropped and symbolic dims as -1."""
    inputs = tuple(_spec(v, where) for v in _graph_inputs(model))
    return inputs, tuple(_spec(v, where) for v in model.graph.output)


def describe_yolo_onnx(path: Path, task: YoloTask, name: str) -> YoloGraph:
    """Validate a YOLO detect/pose ONNX export and describe how to call it.

    Dynamic height, width and output dims are resolved by running the graph once on a blank
    image of the input size, so the specs hold the shapes the model is served at.
    """
    where = f"{name} model {path}"
    model = load_onnx(path)
    meta = onnx_metadata(model)
    declared = meta.get("task")
    if declared is not None and declared != task:
        hint = {"detect": "pass it with --detector", "pose": "pass it with --pose"}.get(
            declared, "only detect and pose models are supported"
        )
        raise ValueError(f"{where} is a '{declared}' model, not '{task}'; {hint}")
    inputs, outputs = tensor_specs(model, where)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"{where} has {len(inputs)} inputs and {len(outputs)} outputs; a YOLO detect or "
            "pose export has one image input and one output (segmentation is not supported)"
        )
    image, output = inputs[0], outputs[0]
    image_dims = _graph_inputs(model)[0].type.tensor_type.shape.dim
    batch = _static_dim(image_dims[0]) if image_dims else None
    size = _input_size(image, meta, where)
    out_dims = output.dims
    if -1 in out_dims:
        out_dims = _run_once(path, image, size, batch or 1, where)[1:]
    keypoints = _keypoint_layout(meta, where) if task == "pose" else None
    output_format, class_count = _output_layout(out_dims, keypoints, meta, where)
    names = _class_names(meta, class_count, task, keypoints, where)
    return YoloGraph(
        name=name,
        task=task,
        inputs=(TensorSpec(image.name, image.dtype, (3, size, size)),),
        outputs=(TensorSpec(output.name, output.dtype, out_dims),),
        output_format=output_format,
        input_size=size,
        batch=batch,
        class_names=names,
        keypoints=keypoints,
    )


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Real inputs: old exports also list their weights (initializers) as graph inputs."""
    weights = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in weights]


def _spec(value: onnx.ValueInfoProto, where: str) -> TensorSpec:
    tensor = value.type.tensor_type
    try:
        dtype = TRITON_DTYPES[tensor.elem_type]
    except KeyError:
        kind = TensorProto.DataType.Name(tensor.elem_type)
        raise ValueError(
            f"{where}: tensor '{value.name}' has type {kind}, which Triton cannot serve"
        ) from None
    dims = tuple(_static_dim(dim) or -1 for dim in tensor.shape.dim[1:])
    return TensorSpec(name=value.name, dtype=dtype, dims=dims)


def _static_dim(dim: onnx.TensorShapeProto.Dimension) -> int | None:
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def _input_size(image: TensorSpec, meta: dict[str, str], where: str) -> int:
    if len(image.dims) != 3 or image.dims[0] not in (3, -1):
        raise ValueError(
            f"{where}: input '{image.name}' has dims {list(image.dims)} after the batch; "
            "expected 3-channel images [3, size, size]"
        )
    height, width = image.dims[1:]
    if height == -1 or width == -1:
        imgsz = _literal(meta, "imgsz", where)
        if isinstance(imgsz, int):
            height = width = imgsz
        elif isinstance(imgsz, list | tuple) and len(imgsz) == 2:
            height, width = imgsz
        else:
            raise ValueError(
                f"{where}: the input height and width are dynamic and the metadata has no "
                "'imgsz' [size, size]; export it with a fixed square imgsz (e.g. imgsz=640)"
            )
    if not isinstance(height, int) or height != width or height <= 0:
        raise ValueError(
            f"{where}: input size {height}x{width} is not square; export it with a square imgsz "
            "(e.g. imgsz=640)"
        )
    return height


def _run_once(path: Path, image: TensorSpec, size: int, batch: int, where: str) -> tuple[int, ...]:
    """The output shape the graph produces for one blank image batch."""
    import onnxruntime as ort  # noqa: PLC0415  # only needed when the file leaves dims dynamic

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    dtype = {"TYPE_FP16": np.float16, "TYPE_UINT8": np.uint8}.get(image.dtype, np.float32)
    blank = np.zeros((batch, 3, size, size), dtype=dtype)
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        result = session.run(None, {image.name: blank})[0]
    except Exception as exc:  # onnxruntime's errors share no base class below Exception
        raise ValueError(
            f"{where} does not run on a {size}x{size} image in onnxruntime ({exc}); re-export it"
        ) from exc
    return tuple(int(d) for d in result.shape)


def _keypoint_layout(meta: dict[str, str], where: str) -> KeypointLayout:
    shape = _literal(meta, "kpt_shape", where) or [len(COCO_KEYPOINTS), 3]
    if not (isinstance(shape, list | tuple) and len(shape) == 2):
        shape = (None, None)
    count, values = shape
    if not (isinstance(count, int) and count > 0 and isinstance(values, int) and values in (2, 3)):
        raise ValueError(f"{where}: metadata 'kpt_shape' is not [count, 2 or 3]; re-export it")
    coco = count == len(COCO_KEYPOINTS)
    return KeypointLayout(
        count=count,
        values_per_point=values,
        names=COCO_KEYPOINTS if coco else tuple(f"kpt_{i}" for i in range(count)),
        skeleton=COCO_SKELETON if coco else (),
    )


def _output_layout(
    dims: tuple[int, ...], keypoints: KeypointLayout | None, meta: dict[str, str], where: str
) -> tuple[OutputFormat, int | None]:
    """The output format and, for raw heads, the class count the channels imply."""
    if len(dims) != 2:
        raise ValueError(
            f"{where}: output has dims {list(dims)} after the batch; expected "
            "[4 + classes (+ keypoints), anchors] or end-to-end [detections, 6 (+ keypoints)]"
        )
    kpt_values = keypoints.count * keypoints.values_per_point if keypoints else 0
    end2end_width = _END2END_VALUES + kpt_values
    flag = meta.get("end2end")
    end2end = flag == "True" if flag is not None else dims[1] == end2end_width
    if end2end:
        if dims[1] != end2end_width:
            raise ValueError(
                f"{where}: end-to-end output rows have {dims[1]} values; expected "
                f"{end2end_width} (box, score, class{', keypoints' if keypoints else ''})"
            )
        return "yolo_end2end", None
    class_count = dims[0] - _BOX_VALUES - kpt_values
    if class_count < 1:
        parts = "4 box values, at least one class score" + (
            f" and {kpt_values} keypoint values" if keypoints else ""
        )
        hint = "; is it a detection model? pass it with --detector" if keypoints else ""
        raise ValueError(f"{where}: output has {dims[0]} channels, too few for {parts}{hint}")
    return "yolo_raw", class_count


def _class_names(
    meta: dict[str, str],
    class_count: int | None,
    task: YoloTask,
    keypoints: KeypointLayout | None,
    where: str,
) -> tuple[str, ...]:
    """Names from the metadata, else COCO's when the shapes match COCO, else `class_<i>`."""
    names = _metadata_names(meta, where)
    if names is not None and class_count is not None and len(names) != class_count:
        raise ValueError(
            f"{where}: output has {class_count} class channels but metadata 'names' lists "
            f"{len(names)} classes; the file is inconsistent, re-export it"
        )
    if names is not None and names != tuple(str(i) for i in range(len(names))):
        return names
    count = class_count if class_count is not None else len(names or ())
    if count == 0:
        raise ValueError(
            f"{where}: an end-to-end output does not tell the class count and the metadata has "
            "no 'names'; export it with ultralytics, which records them"
        )
    if count == len(COCO_CLASSES):
        return COCO_CLASSES
    if task == "pose" and count == 1 and keypoints and keypoints.names == COCO_KEYPOINTS:
        return ("person",)
    return tuple(f"class_{i}" for i in range(count))


def _metadata_names(meta: dict[str, str], where: str) -> tuple[str, ...] | None:
    names = _literal(meta, "names", where)
    if names is None:
        return None
    if not (isinstance(names, dict) and set(names) == set(range(len(names)))):
        raise ValueError(
            f"{where}: metadata 'names' is not an {{index: name}} dict counting from 0"
        )
    return tuple(str(names[i]) for i in range(len(names)))


def _literal(meta: dict[str, str], key: str, where: str) -> object:
    """A metadata value written by ultralytics as a Python literal; None when absent."""
    if key not in meta:
        return None
    try:
        return ast.literal_eval(meta[key])
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ValueError(f"{where}: metadata '{key}' is not a Python literal ({exc})") from None
