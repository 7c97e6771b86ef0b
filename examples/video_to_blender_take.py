"""Track a video and turn it into a Blender action on a face mesh's shape keys.

    pip install "bpy==5.0.1"                                     # Blender as a Python module (3.11)
    python examples/video_to_blender_take.py clip.mp4 --blend face.blend --object Face --out take.blend
    python examples/video_to_blender_take.py --take take.jsonl --out demo.blend   # skip tracking

Without --blend the script builds a demo mesh with the 52 ARKit shape keys. The take is
also written next to the output (`<out>.jsonl`), as `facetrack run VIDEO --out take.jsonl`
would. Inside Blender, the add-on's Import Take button does the same import.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ADDON_DIR = Path(__file__).resolve().parents[1] / "adapters" / "blender"


def track_to_take(video: str, take: Path) -> int:
    """`facetrack run VIDEO --out take.jsonl`, through the Python API."""
    from facetrack.adapters.file_sinks import open_file_sink
    from facetrack.tracker.pipeline import Tracker

    return Tracker().run(video, [open_file_sink(take)])


def demo_face(bpy_module):  # -> bpy.types.Object
    """A small grid with one shape key per ARKit name, each lifting its own vertex."""
    sys.path.insert(0, str(ADDON_DIR))
    from facetrack_blender.core import ARKIT_BLENDSHAPES

    bpy = bpy_module
    side = 8
    verts = [(x / side, y / side, 0.0) for y in range(side) for x in range(side)]
    faces = [(y * side + x, y * side + x + 1, (y + 1) * side + x + 1, (y + 1) * side + x)
             for y in range(side - 1) for x in range(side - 1)]
    mesh = bpy.data.meshes.new("face")
    mesh.from_pydata(verts, [], faces)
    obj = bpy.data.objects.new("face", mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis")
    for i, name in enumerate(ARKIT_BLENDSHAPES):
        key = obj.shape_key_add(name=name, from_mix=False)
        key.data[i].co.z += 0.1
        key.value = 0.0  # shape_key_add starts new keys at 1.0
    return obj


def import_into_blender(take: Path, blend: Path | None, object_name: str | None, out: Path, fps: int) -> str:
    import bpy

    sys.path.insert(0, str(ADDON_DIR))
    import facetrack_blender

    if blend is not None:
        bpy.ops.wm.open_mainfile(filepath=str(blend))
    else:
        bpy.ops.wm.read_factory_settings(use_empty=True)
    facetrack_blender.register()
    scene = bpy.context.scene
    if blend is None:
        scene.render.fps, scene.render.fps_base = fps, 1.0
    obj = bpy.data.objects[object_name] if object_name else (None if blend else demo_face(bpy))
    if obj is None:
        raise SystemExit("give --object NAME: the mesh with ARKit-named shape keys in the .blend")
    scene.facetrack.target = obj
    scene.frame_current = scene.frame_start
    if bpy.ops.facetrack.import_take(filepath=str(take)) != {"FINISHED"}:
        raise SystemExit(f"import of {take} failed (see the messages above)")
    action = obj.data.shape_keys.animation_data.action
    frames = [int(f) for f in action.frame_range]
    scene.frame_end = max(scene.frame_end, frames[1])
    bpy.ops.wm.save_as_mainfile(filepath=str(out.resolve()))
    return f"action {action.name!r} on {obj.name!r}, frames {frames[0]}-{frames[1]}, saved {out}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", nargs="?", help="Video to track (or give --take).")
    parser.add_argument("--take", type=Path, help="An existing .jsonl/.npz take instead of tracking a video.")
    parser.add_argument("--blend", type=Path, help="A .blend holding the face mesh (default: a demo mesh).")
    parser.add_argument("--object", help="The face mesh's object name in --blend.")
    parser.add_argument("--fps", type=int, default=25, help="Scene frame rate for the demo scene.")
    parser.add_argument("--out", type=Path, default=Path("take.blend"), help="The .blend to write.")
    args = parser.parse_args()
    take = args.take
    if take is None:
        if not args.video:
            parser.error("give a VIDEO to track or --take FILE")
        take = args.out.with_suffix(".jsonl")
        print(f"tracked {track_to_take(args.video, take)} frames into {take}")
    print(import_into_blender(take, args.blend, args.object, args.out, args.fps))


if __name__ == "__main__":
    main()
