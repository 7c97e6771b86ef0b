"""The Blender add-on's bpy-free modules (core, processing), importable without Blender.

The add-on's package `__init__` registers operators and panels and so imports bpy, which only Blender
or the [blender] extra has. Its logic modules do not: this registers the package by its folder without
running `__init__`, so `facetrack_blender.core` and `.processing` import as they do inside Blender.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ADDON = Path(__file__).resolve().parents[1] / "adapters" / "blender" / "facetrack_blender"


def addon_module(name: str) -> ModuleType:
    """`facetrack_blender.<name>`, its package registered without running the package's __init__."""
    if "facetrack_blender" not in sys.modules:
        spec = importlib.machinery.ModuleSpec("facetrack_blender", None, is_package=True)
        spec.submodule_search_locations = [str(ADDON)]
        sys.modules["facetrack_blender"] = importlib.util.module_from_spec(spec)
    return importlib.import_module(f"facetrack_blender.{name}")
