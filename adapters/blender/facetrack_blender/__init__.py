"""facetrack for Blender: drive shape keys live from a facetrack stream, record them, import takes.

Sidebar (N) > facetrack in the 3D viewport. Live: `facetrack run webcam:0 --publish`,
select the face mesh, press Connect. Record keys what arrives; Import Take (also File >
Import > facetrack Take) loads a `facetrack run --out take.jsonl` (or .npz) file as
actions, resampled to the scene's frame rate, optionally relative to a neutral range.

Property annotations must stay real expressions for Blender: no `from __future__ import annotations`.
"""

import time

import bpy
from bpy.props import BoolProperty, CollectionProperty, FloatProperty, IntProperty, PointerProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from .core import read_take
from .driver import BoneNames, BoneTarget, FaceRig, FaceTarget, import_take
from .live import LiveReceiver
from .processing import calibrate, neutral_of, parse_name_map, resample

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

    def __init__(self, receiver: LiveReceiver, target: FaceRig, scene: bpy.types.Scene) -> None:
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


def _target(context: bpy.types.Context) -> FaceRig:
    """The face mesh (Target, else the active object), the Extra Targets and the bones, with the name map."""
    settings = context.scene.facetrack
    obj = settings.target or context.active_object
    if obj is None:
        raise ValueError("select the face mesh (or set Target) first")
    overrides = parse_name_map(settings.name_map)
    meshes = [FaceTarget(obj, _prefixes(settings), overrides)]
    for item in settings.extra_targets:
        if item.obj is not None and item.obj != obj:
            meshes.append(FaceTarget(item.obj, _prefixes(settings), overrides))
    names = BoneNames(settings.head_bone, settings.jaw_bone, settings.eye_left_bone, settings.eye_right_bone,
                      settings.jaw_open_deg)
    driven = any((names.head, names.jaw, names.eye_left, names.eye_right))
    bones = None
    if driven:
        if settings.armature is None:
            raise ValueError("bones are named but no Armature is set")
        bones = BoneTarget(settings.armature, names)
    return FaceRig(meshes, bones)


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


class FacetrackTargetItem(bpy.types.PropertyGroup):
    obj: PointerProperty(name="Mesh", type=bpy.types.Object, poll=_is_mesh,
                         description="Another mesh driven by the same face (teeth, tongue, lashes)")


class FacetrackSettings(bpy.types.PropertyGroup):
    endpoint: StringProperty(name="Endpoint", default="tcp://127.0.0.1:5557",
                             description="The publisher's ZeroMQ endpoint (facetrack run --publish)")
    stream_id: StringProperty(name="Stream", default="", description="Only this stream id (empty: all)")
    track_id: IntProperty(name="Track", default=-1, min=-1, description="Face track to follow (-1: the first face)")
    target: PointerProperty(name="Target", type=bpy.types.Object, poll=_is_mesh,
                            description="Mesh whose shape keys are driven (empty: the active object)")
    extra_targets: CollectionProperty(type=FacetrackTargetItem, name="Extra Targets")
    prefixes: StringProperty(name="Prefixes", default="",
                             description="Comma-separated shape-key name prefixes to strip, e.g. 'blendShape1.'")
    name_map: StringProperty(name="Name Map", default="",
                             description="ARKit name = shape-key name pairs that win over automatic matching, "
                                         "comma-separated: jawOpen=MouthOpen, eyeBlinkLeft=Blink_L")
    armature: PointerProperty(name="Armature", type=bpy.types.Object, poll=_is_armature,
                              description="Armature holding the head, jaw and eye bones (optional)")
    head_bone: StringProperty(name="Head bone", default="", description="Pose bone that follows the head rotation")
    jaw_bone: StringProperty(name="Jaw bone", default="", description="Pose bone that jawOpen/jawLeft/jawRight turn")
    eye_left_bone: StringProperty(name="Left eye bone", default="",
                                  description="Pose bone of the character's left eye, turned by the gaze")
    eye_right_bone: StringProperty(name="Right eye bone", default="",
                                   description="Pose bone of the character's right eye, turned by the gaze")
    jaw_open_deg: FloatProperty(name="Jaw opening", default=25.0, min=0.0, max=90.0,
                                description="Degrees the jaw bone turns at jawOpen = 1")
    record: BoolProperty(name="Record", default=False,
                         description="Insert keyframes for what arrives, from the current frame on")
    calibrate: BoolProperty(name="Neutral", default=False,
                            description="On import, subtract the actor's rest face, averaged over the take's frames "
                                        "From..To (source frame indices)")
    neutral_first: IntProperty(name="From", default=0, min=0, description="First take frame of the rest face")
    neutral_last: IntProperty(name="To", default=10, min=0, description="Last take frame of the rest face")


class FACETRACK_OT_add_targets(bpy.types.Operator):
    """Add the selected meshes (teeth, tongue, lashes...) as extra targets of the same face"""

    bl_idname = "facetrack.add_targets"
    bl_label = "Add Selected Meshes"

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.facetrack
        have = {item.obj for item in settings.extra_targets} | {settings.target}
        added = 0
        for obj in context.selected_objects:
            if obj.type == "MESH" and obj not in have:
                settings.extra_targets.add().obj = obj
                added += 1
        self.report({"INFO"}, f"{added} extra target(s) added")
        return {"FINISHED"}


class FACETRACK_OT_remove_target(bpy.types.Operator):
    """Remove this extra target"""

    bl_idname = "facetrack.remove_target"
    bl_label = "Remove Target"
    index: IntProperty()

    def execute(self, context: bpy.types.Context) -> set[str]:
        context.scene.facetrack.extra_targets.remove(self.index)
        return {"FINISHED"}


class FACETRACK_OT_connect(bpy.types.Operator):
    """Receive the facetrack stream and drive the target's shape keys"""

    bl_idname = "facetrack.connect"
    bl_label = "Connect"

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            live = start_live(context)
        except ValueError as exc:  # TakeError (a bad name map) is a ValueError
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"driving {len(live.target.matched)} ARKit shapes of {live.target.name}")
        return {"FINISHED"}


class FACETRACK_OT_disconnect(bpy.types.Operator):
    """Stop receiving (recorded keys stay)"""

    bl_idname = "facetrack.disconnect"
    bl_label = "Disconnect"

    def execute(self, context: bpy.types.Context) -> set[str]:
        stop_live()
        return {"FINISHED"}


def import_take_file(context: bpy.types.Context, path: str) -> tuple[list[bpy.types.Action], int, FaceRig]:
    """Read a take, resample it to the scene's frame rate from the current frame, calibrate, key it."""
    settings = context.scene.facetrack
    rig = _target(context)
    samples = read_take(path, None if settings.track_id < 0 else settings.track_id)
    scene = context.scene
    track = resample(samples, scene.render.fps / scene.render.fps_base, scene.frame_current)
    if settings.calibrate:
        track = calibrate(track, neutral_of(samples, settings.neutral_first, settings.neutral_last))
    actions = import_take(rig, track, bpy.path.display_name_from_filepath(path))
    return actions, len(track.frames), rig


class FACETRACK_OT_import_take(bpy.types.Operator, ImportHelper):
    """Import a facetrack take (.jsonl or .npz from `facetrack run --out`) as actions"""

    bl_idname = "facetrack.import_take"
    bl_label = "Import Take"
    filter_glob: StringProperty(default="*.jsonl;*.npz", options={"HIDDEN"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            actions, frames, rig = import_take_file(context, self.filepath)
        except (ValueError, OSError) as exc:  # TakeError is a ValueError
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{actions[0].name}: {frames} frames, {len(rig.matched)} ARKit shapes on {rig.name}")
        return {"FINISHED"}

    def draw(self, context: bpy.types.Context) -> None:
        """The file browser's side panel: what the import uses."""
        settings = context.scene.facetrack
        layout = self.layout
        for name in ("target", "track_id", "prefixes", "name_map", "armature"):
            layout.prop(settings, name)
        _draw_neutral(layout, settings)


def _draw_neutral(layout: bpy.types.UILayout, settings: FacetrackSettings) -> None:
    row = layout.row(align=True)
    row.prop(settings, "calibrate")
    sub = row.row(align=True)
    sub.enabled = settings.calibrate
    sub.prop(settings, "neutral_first")
    sub.prop(settings, "neutral_last")


def _menu_import(self: bpy.types.Menu, _context: bpy.types.Context) -> None:
    self.layout.operator(FACETRACK_OT_import_take.bl_idname, text="facetrack Take (.jsonl, .npz)")


class FACETRACK_PT_panel(bpy.types.Panel):
    bl_label = "facetrack"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "facetrack"

    def draw(self, context: bpy.types.Context) -> None:
        settings = context.scene.facetrack
        layout = self.layout
        for name in ("endpoint", "stream_id", "track_id", "target"):
            layout.prop(settings, name)
        for index, item in enumerate(settings.extra_targets):
            row = layout.row(align=True)
            row.prop(item, "obj", text="")
            row.operator(FACETRACK_OT_remove_target.bl_idname, text="", icon="X").index = index
        layout.operator(FACETRACK_OT_add_targets.bl_idname, icon="ADD")
        for name in ("prefixes", "name_map", "armature"):
            layout.prop(settings, name)
        if settings.armature is not None:
            for name in ("head_bone", "jaw_bone", "eye_left_bone", "eye_right_bone"):
                layout.prop_search(settings, name, settings.armature.pose, "bones")
            layout.prop(settings, "jaw_open_deg")
        row = layout.row()
        if _session is None:
            row.operator(FACETRACK_OT_connect.bl_idname, icon="PLAY")
        else:
            row.operator(FACETRACK_OT_disconnect.bl_idname, icon="PAUSE")
            layout.label(text=f"{_session.receiver.frames} frames, {_session.keys_inserted} keyed")
        layout.prop(settings, "record", toggle=True, icon="REC")
        _draw_neutral(layout, settings)
        layout.operator(FACETRACK_OT_import_take.bl_idname, icon="IMPORT")


_CLASSES = (FacetrackTargetItem, FacetrackSettings, FACETRACK_OT_add_targets, FACETRACK_OT_remove_target,
            FACETRACK_OT_connect, FACETRACK_OT_disconnect, FACETRACK_OT_import_take, FACETRACK_PT_panel)


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.facetrack = PointerProperty(type=FacetrackSettings)
    bpy.types.TOPBAR_MT_file_import.append(_menu_import)


def unregister() -> None:
    stop_live()
    bpy.types.TOPBAR_MT_file_import.remove(_menu_import)
    del bpy.types.Scene.facetrack
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
