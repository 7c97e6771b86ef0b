"""Export an engine: ONNX with a dynamic batch axis, then its metadata in the file and a checksummed sidecar."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from facetrack.engines.onnx_runtime import write_sidecar


def attach_metadata(path: Path, metadata: dict) -> Path:
    """Store `metadata` as the ONNX file's metadata_props (non-strings as JSON) and write its sidecar."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.save(model, str(path))
    write_sidecar(path, metadata)
    return path


def export_batched(module, example, path: Path, outputs: list[str]) -> None:
    """ONNX (opset 17) of `module` with input `crops` and every output batched along a dynamic first axis."""
    import torch

    names = ["crops", *outputs]
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated; the dynamo one needs onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, example, str(path), input_names=["crops"], output_names=list(outputs),
                          dynamic_axes={n: {0: "n"} for n in names}, opset_version=17, dynamo=False)
