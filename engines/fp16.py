"""An FP16 copy of an ONNX network, for TensorRT 11's strongly typed builds.

TensorRT 10 picks FP16 kernels itself when `BuilderFlag.FP16` is set; TensorRT 11 removed
that flag and builds each layer in the precision the network states. So for `--fp16` on
TensorRT 11 the ONNX file is rewritten in FP16 first: float weights and constants become
float16, and casts at the graph's edges keep float32 inputs and outputs, so callers see
the same interface at either precision.
"""

from __future__ import annotations

from pathlib import Path


def onnx_to_fp16(source: Path, out: Path) -> Path:
    """Write `out`: `source` computing in float16 between float32 inputs and outputs."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    for i, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT:
            graph.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16),
                                                                  init.name))
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16)))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
    weights = {init.name for init in graph.initializer}
    casts_in = []
    for value in graph.input:
        if value.name in weights or value.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        half = f"{value.name}__fp16"
        for node in graph.node:
            node.input[:] = [half if name == value.name else name for name in node.input]
        casts_in.append(helper.make_node("Cast", [value.name], [half], to=TensorProto.FLOAT16))
    casts_out = []
    for value in graph.output:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        half = f"{value.name}__fp16"
        for node in graph.node:
            node.output[:] = [half if name == value.name else name for name in node.output]
            node.input[:] = [half if name == value.name else name for name in node.input]
        casts_out.append(helper.make_node("Cast", [half], [value.name], to=TensorProto.FLOAT))
    nodes = casts_in + list(graph.node) + casts_out
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    onnx.save(model, str(out))
    return out
