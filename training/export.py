"""Finish an exported engine: the metadata goes into the ONNX file and into its checksummed sidecar."""

from __future__ import annotations

import json
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
