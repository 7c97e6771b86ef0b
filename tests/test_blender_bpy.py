"""The Blender add-on in a real Blender (bpy 5.0.1 as a module), one subprocess per scenario.

Each scenario runs this file as a script in a fresh process (bpy keeps global state
and bundles its own libraries; the test process stays free of them) and prints a JSON
report that the test checks. The live scenario is driven by our real ZmqPublisher.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ADDON_DIR = Path(__file__).resolve().parents[1] / "adapters" / "blender"
SPLIT = ("browInnerUp_L", "browInnerUp_R")  # an ICT-style split pair driven by browInnerUp


def _weights(i: int) -> np.ndarray:
    return ((np.arange(52) + i) % 52 / 51).astype(np.float32)


# ---- inside Blender ----------------------------------------------------------------------


def _scene_with_face(names: list[str]):  # -> (bpy module, context, mesh object, armature object)
    import bpy
    import facetrack_blender

    bpy.ops.wm.read_factory_settings(use_empty=True)
    facetrack_blender.register()
    mesh = bpy.data.meshes.new("face")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 0, 1)], [], [(0, 1, 2)])
    obj = bpy.data.objects.new("face", mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis")
    for name in names:
        obj.shape_key_add(name=name, from_mix=False)  # starts at 1.0: the add-on must reset it
    arm_data = bpy.data.armatures.new("rig")
    arm = bpy.data.objects.new("rig", arm_data)
    bpy.context.scene.collection.objects.link(arm)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    bone = arm_data.edit_bones.new("head")
    bone.head, bone.tail = (0, 0, 1.5), (0, 0, 1.7)
    bpy.ops.object.mode_set(mode="OBJECT")
    bpy.context.view_layer.objects.active = obj
    settings = bpy.context.scene.facetrack
    settings.target, settings.armature, settings.head_bone = obj, arm, "head"
    return bpy, obj, arm


def _key_values(obj) -> dict[str, float]:
    return {k.name: k.value for k in obj.data.shape_keys.key_blocks if k.name != "Basis"}


def _scenario_live(endpoint: str, names: list[str]) -> dict:
    import facetrack_blender

    bpy, obj, arm = _scene_with_face(names)
    bpy.context.scene.facetrack.endpoint = endpoint
    initial = _key_values(obj)
    live = facetrack_blender.start_live(bpy.context)
    after_reset = _key_values(obj)
    registered = bpy.app.timers.is_registered(facetrack_blender._tick)
    # bpy as a module has no event loop, so timers never fire: run the timer's own function.
    deadline = time.monotonic() + 10
    while not live.receiver.frames and time.monotonic() < deadline:
        facetrack_blender._tick()
        time.sleep(0.01)
    values = _key_values(obj)
    bone_q = list(arm.pose.bones["head"].rotation_quaternion)
    # Record: three more steps, each keyed at its own scene frame.
    bpy.context.scene.facetrack.record = True
    deadline = time.monotonic() + 10
    while live.keys_inserted < 3 and time.monotonic() < deadline:
        facetrack_blender._tick()
        time.sleep(0.01)
    bag_curves = {}
    animation = obj.data.shape_keys.animation_data
    if animation is not None and animation.action is not None:
        from bpy_extras import anim_utils

        bag = anim_utils.action_get_channelbag_for_slot(animation.action, animation.action_slot)
        bag_curves = {c.data_path: len(c.keyframe_points) for c in bag.fcurves}
    frames = live.receiver.frames
    facetrack_blender.stop_live()
    return {
        "initial": initial, "after_reset": after_reset, "registered": registered, "values": values,
        "bone": bone_q, "frames": frames, "keys_inserted": live.keys_inserted, "curves": bag_curves,
        "stopped": not bpy.app.timers.is_registered(facetrack_blender._tick),
    }


def _scenario_import(take: str, fps: int, names: list[str]) -> dict:
    bpy, obj, arm = _scene_with_face(names)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = fps, 1.0
    scene.frame_current = 1
    started = time.perf_counter()
    result = bpy.ops.facetrack.import_take(filepath=take)
    import_ms = (time.perf_counter() - started) * 1e3
    from bpy_extras import anim_utils

    animation = obj.data.shape_keys.animation_data
    bag = anim_utils.action_get_channelbag_for_slot(animation.action, animation.action_slot)
    curves = {c.data_path: [tuple(k.co) for k in c.keyframe_points] for c in bag.fcurves}
    evaluated = {}
    for frame in (1, 3):
        scene.frame_set(frame)
        evaluated[frame] = _key_values(obj)
    head_animation = arm.animation_data
    return {"result": sorted(result), "action": animation.action.name, "curves": curves, "evaluated": evaluated,
            "head_action": None if head_animation is None else head_animation.action.name, "import_ms": import_ms}


def _scenario_rig(take: str) -> dict:
    """A face, a teeth mesh and an armature with head, jaw and eye bones; a 30 fps take into a 25 fps scene."""
    bpy, obj, arm = _scene_with_face(["eyeBlinkLeft", "MouthOpenCustom", "eyeLookOutLeft"])
    from bpy_extras import anim_utils  # importable once bpy is

    teeth_mesh = bpy.data.meshes.new("teeth")
    teeth_mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 0, 1)], [], [(0, 1, 2)])
    teeth = bpy.data.objects.new("teeth", teeth_mesh)
    bpy.context.scene.collection.objects.link(teeth)
    teeth.shape_key_add(name="Basis")
    teeth.shape_key_add(name="jawOpen", from_mix=False)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    for name, head, tail in (("jaw", (0, -0.02, 1.55), (0, -0.1, 1.5)), ("eye.L", (0.03, -0.08, 1.62),
                             (0.03, -0.1, 1.62)), ("eye.R", (-0.03, -0.08, 1.62), (-0.03, -0.1, 1.62))):
        bone = arm.data.edit_bones.new(name)
        bone.head, bone.tail = head, tail
        bone.parent = arm.data.edit_bones["head"]
    bpy.ops.object.mode_set(mode="OBJECT")
    bpy.context.view_layer.objects.active = obj
    scene = bpy.context.scene
    settings = scene.facetrack
    teeth.select_set(True)
    bpy.ops.facetrack.add_targets()
    settings.name_map = "jawOpen=MouthOpenCustom"
    settings.jaw_bone, settings.eye_left_bone, settings.eye_right_bone = "jaw", "eye.L", "eye.R"
    settings.calibrate, settings.neutral_first, settings.neutral_last = True, 0, 2
    scene.render.fps, scene.render.fps_base = 25, 1.0
    scene.frame_current = 1
    menu = [f.__name__ for f in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()]
    result = bpy.ops.facetrack.import_take(filepath=take)

    def curves(owner) -> dict:
        animation = owner.animation_data
        bag = anim_utils.action_get_channelbag_for_slot(animation.action, animation.action_slot)
        return {f"{c.data_path}[{c.array_index}]": [tuple(k.co) for k in c.keyframe_points] for c in bag.fcurves}

    face_curves, teeth_curves, bone_curves = curves(obj.data.shape_keys), curves(teeth.data.shape_keys), curves(arm)
    scene.frame_set(14)
    return {"result": sorted(result), "menu": menu, "targets": [i.obj.name for i in settings.extra_targets],
            "face": face_curves, "teeth": teeth_curves, "bones": bone_curves,
            "actions": sorted(a.name for a in bpy.data.actions),
            "jaw_at_14": list(arm.pose.bones["jaw"].rotation_quaternion),
            "eye_at_14": list(arm.pose.bones["eye.L"].rotation_quaternion)}


def _scenario_install(zip_path: str) -> dict:
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    return {"result": sorted(result),
            "enabled": sorted(k for k in bpy.context.preferences.addons.keys() if "facetrack" in k),
            "operator": hasattr(bpy.ops.facetrack, "import_take"), "settings": hasattr(bpy.context.scene, "facetrack")}


# ---- the tests ---------------------------------------------------------------------------

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("bpy") is None, reason="bpy is not installed (pip install bpy==5.0.1 on Python 3.11)"
)


def _run(*args: str, timeout: float = 60, while_running=None, env: dict[str, str] | None = None) -> dict:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    if while_running is None:  # read while it runs: a large report must not fill the pipe and block the child
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
    else:
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            while_running()
            time.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, f"Blender scenario failed:\n{err[-4000:]}"
    report = [line for line in out.splitlines() if line.startswith("REPORT ")]
    assert report, f"no report from the scenario:\n{out[-2000:]}\n{err[-2000:]}"
    return json.loads(report[-1][len("REPORT "):])


def _names() -> list[str]:
    from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES

    return [n for n in ARKIT_BLENDSHAPES if n != "browInnerUp"] + list(SPLIT)


def test_live_stream_drives_shape_keys_and_head_bone_and_records_keys() -> None:
    from facetrack.adapters.zmq_publisher import PublisherConfig, ZmqPublisher
    from facetrack.tracker.core.schema import (
        ARKIT_BLENDSHAPES,
        FaceResult,
        FrameResult,
        HeadPose,
        SourceInfo,
        StreamMetadata,
    )  # fmt: skip

    publisher = ZmqPublisher(PublisherConfig(endpoint="tcp://127.0.0.1:*", metadata_interval_s=0.2))
    publisher.start(StreamMetadata(stream_id="cam", source=SourceInfo(uri="x", live=True, width=640, height=480),
                                   started_at=time.time()))
    state = {"i": 0}
    yaw_quat = (0.0, float(np.sin(np.radians(20) / 2)), 0.0, float(np.cos(np.radians(20) / 2)))

    def publish() -> None:  # one frame per poll of the child process, all with the same pose
        i = state["i"]
        face = FaceResult(track_id=1, bbox=(0, 0, 1, 1), score=1.0, landmarks=np.zeros((478, 3), np.float32),
                          pose=HeadPose(rotation=yaw_quat, yaw=20, pitch=0, roll=0, translation=(0, 0, -60)),
                          blendshapes=np.full(52, 0.25, np.float32) + 0.5 * (np.arange(52) == 17))
        publisher.write(FrameResult(stream_id="cam", frame_index=i, pts=i / 30, capture_time=time.time(),
                                    width=640, height=480, faces=[face]))
        state["i"] = i + 1

    try:
        report = _run("live", publisher.endpoint, json.dumps(_names()), while_running=publish)
    finally:
        publisher.close()
    assert all(v == 1.0 for v in report["initial"].values())  # what shape_key_add gives
    assert all(v == 0.0 for v in report["after_reset"].values())
    assert report["registered"] and report["stopped"] and report["frames"] >= 1
    values = report["values"]
    assert values["jawOpen"] == pytest.approx(0.75) and ARKIT_BLENDSHAPES[17] == "jawOpen"
    assert values["eyeBlinkLeft"] == pytest.approx(0.25)
    assert values["browInnerUp_L"] == pytest.approx(0.25) and values["browInnerUp_R"] == pytest.approx(0.25)
    # +20 degrees of yaw turns the head about world +Z; the bone points along +Z, so in its
    # rest frame (bone Y = world Z) that is +20 degrees about its own Y.
    np.testing.assert_allclose(report["bone"], (np.cos(np.radians(10)), 0, np.sin(np.radians(10)), 0), atol=1e-5)
    assert report["keys_inserted"] >= 3
    assert report["curves"]['key_blocks["jawOpen"].value'] >= 1
    assert len(report["curves"]) == len(_names())


@pytest.mark.parametrize("suffix", [".jsonl", ".npz"])
def test_import_take_builds_an_action_with_the_takes_values(tmp_path: Path, suffix: str) -> None:
    from facetrack.adapters.file_sinks import open_file_sink
    from facetrack.tracker.core.schema import FaceResult, FrameResult, HeadPose, SourceInfo, StreamMetadata

    sink = open_file_sink(tmp_path / f"take{suffix}")
    sink.start(StreamMetadata(stream_id="cam", source=SourceInfo(uri="x", live=False, width=640, height=480),
                              started_at=time.time()))
    for i in range(20):
        face = FaceResult(track_id=1, bbox=(0, 0, 1, 1), score=1.0, landmarks=np.zeros((478, 3), np.float32),
                          pose=HeadPose(rotation=(0, 0, 0, 1), yaw=0, pitch=0, roll=0, translation=(0, 0, -60)),
                          blendshapes=_weights(i))
        sink.write(FrameResult(stream_id="cam", frame_index=i, pts=i / 25, capture_time=1000 + i / 25,
                               width=640, height=480, faces=[face]))
    sink.close()

    report = _run("import", str(tmp_path / f"take{suffix}"), "25", json.dumps(_names()))
    assert report["result"] == ["FINISHED"] and report["action"] == "take"
    assert report["head_action"] == "take.bones"
    curves = report["curves"]
    assert len(curves) == len(_names())
    jaw = curves['key_blocks["jawOpen"].value']
    assert [f for f, _ in jaw] == list(range(1, 21))
    np.testing.assert_allclose([v for _, v in jaw], [_weights(i)[17] for i in range(20)], atol=1e-6)
    for frame, i in ((1, 0), (3, 2)):
        got = report["evaluated"][str(frame)]
        assert got["eyeBlinkLeft"] == pytest.approx(float(_weights(i)[0]), abs=1e-6)
        assert got["browInnerUp_R"] == pytest.approx(float(_weights(i)[43]), abs=1e-6)

    slow = _run("import", str(tmp_path / f"take{suffix}"), "50", json.dumps(_names()))
    keys = slow["curves"]['key_blocks["jawOpen"].value']
    assert [f for f, _ in keys][:3] == [1, 2, 3] and len(keys) == 39  # every scene frame, in-betweens interpolated
    assert keys[1][1] == pytest.approx((_weights(0)[17] + _weights(1)[17]) / 2, abs=1e-6)


def test_import_drives_several_meshes_and_bones_resampled_and_calibrated(tmp_path: Path) -> None:
    """30 fps take, 25 fps scene; rest face = frames 0-2; name map; teeth mesh; jaw and eye bones."""
    from facetrack.adapters.file_sinks import open_file_sink
    from facetrack.tracker.core.schema import (
        ARKIT_BLENDSHAPES,
        FaceResult,
        FrameResult,
        HeadPose,
        SourceInfo,
        StreamMetadata,
    )  # fmt: skip

    jaw, look = ARKIT_BLENDSHAPES.index("jawOpen"), ARKIT_BLENDSHAPES.index("eyeLookOutLeft")
    sink = open_file_sink(tmp_path / "take.jsonl")
    sink.start(StreamMetadata(stream_id="cam", source=SourceInfo(uri="x", live=False, width=1, height=1),
                              started_at=time.time()))
    for i in range(31):  # one second at 30 fps; at rest (jawOpen 0.2) for frames 0-2, then a ramp to 1
        w = np.zeros(52, np.float32)
        w[jaw] = 0.2 if i <= 2 else 0.2 + 0.8 * (i - 2) / 28
        w[look] = 0.5
        face = FaceResult(track_id=1, bbox=(0, 0, 1, 1), score=1.0, landmarks=np.zeros((478, 3), np.float32),
                          pose=HeadPose(rotation=(0, 0, 0, 1), yaw=0, pitch=0, roll=0, translation=(0, 0, -60)),
                          blendshapes=w)
        sink.write(FrameResult(stream_id="cam", frame_index=i, pts=i / 30, capture_time=0.0, width=1, height=1,
                               faces=[face]))
    sink.close()
    report = _run("rig", str(tmp_path / "take.jsonl"))
    assert report["result"] == ["FINISHED"] and "_menu_import" in report["menu"]
    assert report["targets"] == ["teeth"]
    assert report["actions"] == ["take", "take.bones", "take.teeth"]
    face_jaw = report["face"]['key_blocks["MouthOpenCustom"].value[0]']  # the name map was applied
    teeth_jaw = report["teeth"]['key_blocks["jawOpen"].value[0]']
    assert [f for f, _ in face_jaw] == list(range(1, 27)) and face_jaw == teeth_jaw
    t = np.arange(26) / 25  # scene frame k is the take at k/25 s, where the source frame is 30 t
    expected = np.clip((np.where(30 * t <= 2, 0.2, 0.2 + 0.8 * (30 * t - 2) / 28) - 0.2) / 0.8, 0, 1)
    np.testing.assert_allclose([v for _, v in face_jaw], expected, atol=2e-3)  # piecewise-linear near frame 2
    np.testing.assert_allclose([v for _, v in face_jaw][5:], expected[5:], atol=1e-6)
    assert {k.rsplit("[", 1)[0] for k in report["bones"]} == {f'pose.bones["{b}"].rotation_quaternion'
                                                          for b in ("head", "jaw", "eye.L", "eye.R")}
    # at scene frame 14 the calibrated jawOpen is 0.5 (value 0.6): the jaw turns 12.5 degrees
    assert 2 * np.degrees(np.arccos(min(1.0, abs(report["jaw_at_14"][0])))) == pytest.approx(
        25 * expected[13], abs=0.1)
    # the calibrated eyeLookOutLeft is 0 (it was 0.5 at rest too): the eye stays at rest
    np.testing.assert_allclose(report["eye_at_14"], (1, 0, 0, 0), atol=1e-6)


def test_extension_zip_installs_and_enables_in_blender(tmp_path: Path) -> None:
    """The zip build_extension.py makes is a valid Blender 4.2+ extension (installed into a throwaway HOME)."""
    build = subprocess.run([sys.executable, str(ADDON_DIR / "build_extension.py"), "--no-wheels", "--out",
                            str(tmp_path / "dist")], capture_output=True, text=True, timeout=60)
    assert build.returncode == 0, build.stderr
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    report = _run("install", build.stdout.strip(), env=env)
    assert report["result"] == ["FINISHED"]
    assert report["enabled"] == ["bl_ext.user_default.facetrack"]
    assert report["operator"] and report["settings"]


def test_example_turns_a_take_into_a_saved_blend(tmp_path: Path) -> None:
    from facetrack.adapters.file_sinks import open_file_sink
    from facetrack.tracker.core.schema import FaceResult, FrameResult, HeadPose, SourceInfo, StreamMetadata

    take = tmp_path / "take.jsonl"
    sink = open_file_sink(take)
    sink.start(StreamMetadata(stream_id="cam", source=SourceInfo(uri="x", live=False, width=1, height=1),
                              started_at=time.time()))
    for i in range(12):
        face = FaceResult(track_id=1, bbox=(0, 0, 1, 1), score=1.0, landmarks=np.zeros((478, 3), np.float32),
                          pose=HeadPose(rotation=(0, 0, 0, 1), yaw=0, pitch=0, roll=0, translation=(0, 0, -60)),
                          blendshapes=_weights(i))
        sink.write(FrameResult(stream_id="cam", frame_index=i, pts=i / 25, capture_time=0.0, width=1, height=1,
                               faces=[face]))
    sink.close()
    example = Path(__file__).resolve().parents[1] / "examples" / "video_to_blender_take.py"
    done = subprocess.run([sys.executable, str(example), "--take", str(take), "--out", str(tmp_path / "demo.blend")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "action 'take' on 'face', frames 1-12" in done.stdout
    assert (tmp_path / "demo.blend").stat().st_size > 10_000


if __name__ == "__main__":
    sys.path.insert(0, str(ADDON_DIR))
    scenario, *rest = sys.argv[1:]
    if scenario == "live":
        out = _scenario_live(rest[0], json.loads(rest[1]))
    elif scenario == "install":
        out = _scenario_install(rest[0])
    elif scenario == "rig":
        out = _scenario_rig(rest[0])
    else:
        out = _scenario_import(rest[0], int(rest[1]), json.loads(rest[2]))
    print("REPORT " + json.dumps(out), flush=True)
