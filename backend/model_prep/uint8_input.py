"""Give a YOLO graph a UINT8 image input, scaling to 0..1 inside the graph.

Clients then send raw letterboxed pixels: a quarter of the bytes of FP32 through gRPC and
Triton's shared memory, and no float conversion in the backend. The original float input
becomes an internal tensor fed by `Cast` and `Mul(1/255)`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_FLOAT_TYPES = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16}


def accept_uint8_images(path: Path) -> bool:
    """Rewrite the ONNX file in place; returns False when its input already is UINT8."""
    model = onnx.load(str(path))
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise ValueError(f"{path.name}: expected one image input, found {len(inputs)}")
    image = inputs[0]
    elem_type = image.type.tensor_type.elem_type
    if elem_type == TensorProto.UINT8:
        return False
    if elem_type not in _FLOAT_TYPES:
        raise ValueError(
            f"{path.name}: image input '{image.name}' has ONNX type "
            f"{TensorProto.DataType.Name(elem_type)}; expected FLOAT or FLOAT16"
        )
    name = image.name
    cast, scaled, factor = f"{name}_cast", f"{name}_scaled", f"{name}_inv255"
    for node in graph.node:
        node.input[:] = [scaled if value == name else value for value in node.input]
    graph.initializer.append(
        numpy_helper.from_array(np.array(1 / 255, dtype=_FLOAT_TYPES[elem_type]), factor)
    )
    graph.node.insert(0, helper.make_node("Mul", [cast, factor], [scaled], name=f"{name}_scale"))
    graph.node.insert(0, helper.make_node("Cast", [name], [cast], to=elem_type, name=cast))
    image.type.tensor_type.elem_type = TensorProto.UINT8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return True
