"""facetrack for Blender: drive shape keys live from a facetrack stream, record them, import takes.

Sidebar (N) > facetrack in the 3D viewport. Live: `facetrack run webcam:0 --publish`,
select the face mesh, press Connect. Record keys what arrives; Import Take loads a
`facetrack run --out take.jsonl` (or .npz) file as an action.

Property annotations must stay real expressions for Blender: no `from __future__ import annotations`.
"""

import time

import bpy
from bpy.props import BoolProperty, IntProperty, PointerProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from .core import read_take
from .driver import FaceTarget, import_take
from .live import LiveReceiver

bl_info = {  # Blender < 4.2 reads this; 4.2+ reads blender_manifest.toml
    "name": "facetrack",
    "author": "facetrack developers",
    "version": (0, 1, 0),
    "blender": (4, 2, 0),
    "location": "3D Viewport > Sidebar > facetrack",
    "description": "Drive shape keys live from a facetrack stream, record them, import takes",
    "category": "Animation",
}

POLL_INTERVAL_S = 1 / 60


class LiveSession:
    """A receiver and a target; `step()` is what the UI timer runs each tick."""

    def __init__(self, receiver: LiveReceiver, target: FaceTarget, scene: bpy.types.Scene) -> None:
        self.receiver = receiver
        self.target = target
        self.scene = scene
        self.record_origin: float | None = None
        self.record_start_frame = scene.frame_current
        self.keys_inserted = 0
        self.last_sample_at = 0.0

    def step(self) -> float | None:
        """Apply the newest sample (keying it when recording); the next interval for bpy.app.timers."""
        sample = self.receiver.poll()
        if sample is None:
            return POLL_INTERVAL_S
        self.last_sample_at = time.monotonic()
        self.target.apply(sample)
        settings = self.scene.facetrack
        if settings.record:
            if self.record_origin is None:
                self.record_origin = sample.time
                self.record_start_frame = self.scene.frame_current
            fps = self.scene.render.fps / self.scene.render.fps_base
            frame = self.record_start_frame + round((sample.time - self.record_origin) * fps)
            self.target.insert_keys(frame)
            self.keys_inserted += 1
        else:
            self.record_origin = None
        return POLL_INTERVAL_S

    def close(self) -> None:
        self.receiver.close()


_session: "LiveSession | None" = None


def session() -> LiveSession | None:
    """The running live session (None when disconnected)."""
    return _session


def _tick() -> float | None:
    if _session is None:
        return None
    return _session.step()


def _prefixes(settings: "FacetrackSettings") -> list[str]:
    return [p.strip() for p in settings.prefixes.split(",") if p.strip()]


def _target(context: bpy.types.Context) -> FaceTarget:
    settings = context.scene.facetrack
    obj = settings.target or context.active_object
    if obj is None:
        raise ValueError("select the face mesh (or set Target) first")
    return FaceTarget(obj, _prefixes(settings), None, settings.armature, settings.head_bone)


def start_live(context: bpy.types.Context) -> LiveSession:
    """Connect to the stream and start driving (what the Connect button does)."""
    global _session
    stop_live()
    settings = context.scene.facetrack
    target = _target(context)
    target.reset()
    receiver = LiveReceiver(settings.endpoint, settings.stream_id or None,
                            None if settings.track_id < 0 else settings.track_id)
    _session = LiveSession(receiver, target, context.scene)
    bpy.app.timers.register(_tick, first_interval=0.0)
    return _session


def stop_live() -> None:
    """Disconnect (what the Disconnect button does); recorded keys stay."""
    global _session
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)
    if _session is not None:
        _session.close()
        _session = None


def _is_mesh(_self: object, obj: bpy.types.Object) -> bool:
    return obj.type == "MESH"


def _is_armature(_self: object, obj: bpy.types.Object) -> bool:
    return obj.type == "ARMATURE"


class FacetrackSettings(bpy.types.PropertyGroup):
    endpoint: StringProperty(name="Endpoint", default="tcp://127.0.0.1:5557",
                             description="The publisher's ZeroMQ endpoint (facetrack run --publish)")
    stream_id: StringProperty(name="Stream", default="", description="Only this stream id (empty: all)")
    track_id: IntProperty(name="Track", default=-1, min=-1, description="Face track to follow (-1: the first face)")
    target: PointerProperty(name="Target", type=bpy.types.Object, poll=_is_mesh,
                            description="Mesh whose shape keys are driven (empty: the active object)")
    prefixes: StringProperty(name="Prefixes", default="",
                             description="Comma-separated shape-key name prefixes to strip, e.g. 'blendShape1.'")
    armature: PointerProperty(name="Armature", type=bpy.types.Object, poll=_is_armature,
                              description="Armature holding the head bone (optional)")
    head_bone: StringProperty(name="Head bone", default="", description="Pose bone that follows the head rotation")
    record: BoolProperty(name="Record", default=False,
                         description="Insert keyframes for what arrives, from the current frame on")


class FACETRACK_OT_connect(bpy.types.Operator):
    """Receive the facetrack stream and drive the target's shape keys"""

    bl_idname = "facetrack.connect"
    bl_label = "Connect"

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            live = start_live(context)
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"driving {len(live.target.matched)} ARKit shapes of {live.target.obj.name}")
        return {"FINISHED"}


class FACETRACK_OT_disconnect(bpy.types.Operator):
    """Stop receiving (recorded keys stay)"""

    bl_idname = "facetrack.disconnect"
    bl_label = "Disconnect"

    def execute(self, context: bpy.types.Context) -> set[str]:
        stop_live()
        return {"FINISHED"}


class FACETRACK_OT_import_take(bpy.types.Operator, ImportHelper):
    """Import a facetrack take (.jsonl or .npz from `facetrack run --out`) as an action"""

    bl_idname = "facetrack.import_take"
    bl_label = "Import Take"
    filter_glob: StringProperty(default="*.jsonl;*.npz", options={"HIDDEN"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.facetrack
        try:
            target = _target(context)
            samples = read_take(self.filepath, None if settings.track_id < 0 else settings.track_id)
        except (ValueError, OSError) as exc:  # TakeError is a ValueError
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if not samples:
            self.report({"WARNING"}, "the take has no frame with the chosen face")
            return {"CANCELLED"}
        scene = context.scene
        fps = scene.render.fps / scene.render.fps_base
        action = import_take(target, samples, bpy.path.display_name_from_filepath(self.filepath), fps,
                             scene.frame_current)
        self.report({"INFO"}, f"{action.name}: {len(samples)} frames, {len(target.matched)} ARKit shapes")
        return {"FINISHED"}


class FACETRACK_PT_panel(bpy.types.Panel):
    bl_label = "facetrack"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "facetrack"

    def draw(self, context: bpy.types.Context) -> None:
        settings = context.scene.facetrack
        layout = self.layout
        for name in ("endpoint", "stream_id", "track_id", "target", "prefixes", "armature"):
            layout.prop(settings, name)
        if settings.armature is not None:
            layout.prop_search(settings, "head_bone", settings.armature.pose, "bones")
        row = layout.row()
        if _session is None:
            row.operator(FACETRACK_OT_connect.bl_idname, icon="PLAY")
        else:
            row.operator(FACETRACK_OT_disconnect.bl_idname, icon="PAUSE")
            layout.label(text=f"{_session.receiver.frames} frames, {_session.keys_inserted} keyed")
        layout.prop(settings, "record", toggle=True, icon="REC")
        layout.operator(FACETRACK_OT_import_take.bl_idname, icon="IMPORT")


_CLASSES = (FacetrackSettings, FACETRACK_OT_connect, FACETRACK_OT_disconnect, FACETRACK_OT_import_take,
            FACETRACK_PT_panel)


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.facetrack = PointerProperty(type=FacetrackSettings)


def unregister() -> None:
    stop_live()
    del bpy.types.Scene.facetrack
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
