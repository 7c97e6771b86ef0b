"""Apply face samples to Blender data: shape keys of several meshes, head/jaw/eye bones, keyframes, actions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import bpy
import numpy as np
from bpy_extras import anim_utils
from mathutils import Quaternion

from .core import ARKIT_BLENDSHAPES, FaceSample, blender_rotation, match_shape_keys
from .processing import Track, eye_rotations, jaw_rotations


class FaceTarget:
    """The shape keys of one mesh object (face, teeth, tongue, lashes...) that samples drive."""

    def __init__(
        self,
        obj: bpy.types.Object,
        prefixes: Sequence[str] = (),
        overrides: Mapping[str, str | Sequence[str]] | None = None,
    ) -> None:
        keys = obj.data.shape_keys if obj.type == "MESH" else None
        if keys is None:
            raise ValueError(f"{obj.name!r} has no shape keys: select a mesh with ARKit-named shape keys")
        self.obj = obj
        self.key = keys
        names = [block.name for block in keys.key_blocks if block != keys.reference_key]
        # One name map serves several meshes: an entry applies where this mesh has the key it names.
        present = {arkit: key for arkit, key in (overrides or {}).items()
                   if all(k in keys.key_blocks for k in ([key] if isinstance(key, str) else key))}
        self.mapping = {
            index: [keys.key_blocks[name] for name in found]
            for index, found in match_shape_keys(names, prefixes, present).items()
        }

    @property
    def matched(self) -> list[str]:
        """The ARKit names that drive at least one shape key."""
        return [ARKIT_BLENDSHAPES[i] for i, blocks in sorted(self.mapping.items()) if blocks]


@dataclass
class BoneNames:
    """Pose bones that follow the face (empty: not driven). Rigify: head, jaw_master, ORG-eye.L/.R."""

    head: str = ""
    jaw: str = ""
    eye_left: str = ""
    eye_right: str = ""
    jaw_open_deg: float = 25.0
    jaw_side_deg: float = 8.0


class BoneTarget:
    """An armature's head, jaw and eye bones. Rotations are turned into Blender's axes (a character
    facing -Y with Z up) and expressed in each bone's rest frame, relative to its parent."""

    def __init__(self, armature: bpy.types.Object, names: BoneNames) -> None:
        if armature.type != "ARMATURE":
            raise ValueError(f"{armature.name!r} is not an armature")
        self.armature = armature
        self.names = names
        self.bones: dict[str, bpy.types.PoseBone] = {}
        self._rest: dict[str, Quaternion] = {}
        for role in ("head", "jaw", "eye_left", "eye_right"):
            name = getattr(names, role)
            if not name:
                continue
            if name not in armature.pose.bones:
                raise ValueError(f"no pose bone {name!r} on {armature.name!r} (for the {role.replace('_', ' ')})")
            bone = armature.pose.bones[name]
            bone.rotation_mode = "QUATERNION"
            self.bones[role] = bone
            self._rest[role] = armature.matrix_world.to_quaternion() @ bone.bone.matrix_local.to_quaternion()

    def local(self, role: str, rotations: np.ndarray) -> list[Quaternion]:
        """(n, 4) rotations (x, y, z, w) in facetrack's frame -> the bone's local rotations."""
        rest = self._rest[role]
        inverse = rest.inverted()
        return [inverse @ Quaternion(blender_rotation(q)) @ rest for q in rotations]

    def rotations(self, weights: np.ndarray | None, head: np.ndarray) -> dict[str, list[Quaternion]]:
        """Each driven bone's local rotations for (n, 52) weights (None: jaw and eyes at rest) and (n, 4) heads."""
        out: dict[str, list[Quaternion]] = {}
        if "head" in self.bones:
            out["head"] = self.local("head", head)
        if weights is None:
            return out
        if "jaw" in self.bones:
            out["jaw"] = self.local("jaw", jaw_rotations(weights, self.names.jaw_open_deg, self.names.jaw_side_deg))
        left, right = eye_rotations(weights)
        for role, rotations in (("eye_left", left), ("eye_right", right)):
            if role in self.bones:
                out[role] = self.local(role, rotations)
        return out


class FaceRig:
    """Everything one face drives: the shape keys of several meshes and, optionally, bones."""

    def __init__(self, meshes: Sequence[FaceTarget], bones: BoneTarget | None = None) -> None:
        if not meshes and bones is None:
            raise ValueError("nothing to drive: set a target mesh with shape keys or an armature's bones")
        self.meshes = list(meshes)
        self.bones = bones

    @property
    def matched(self) -> list[str]:
        """The ARKit names that drive a shape key on any of the meshes."""
        found = {name for mesh in self.meshes for name in mesh.matched}
        return [name for name in ARKIT_BLENDSHAPES if name in found]

    @property
    def name(self) -> str:
        return ", ".join(m.obj.name for m in self.meshes) or self.bones.armature.name  # type: ignore[union-attr]

    def apply(self, sample: FaceSample) -> None:
        """Set shape-key values (and the bones) from one sample."""
        if sample.blendshapes is not None:
            for mesh in self.meshes:
                for index, blocks in mesh.mapping.items():
                    for block in blocks:
                        block.value = sample.blendshapes[index]
        if self.bones is not None:
            weights = None if sample.blendshapes is None else np.array([sample.blendshapes])
            for role, rotations in self.bones.rotations(weights, np.array([sample.rotation])).items():
                self.bones.bones[role].rotation_quaternion = rotations[0]

    def insert_keys(self, frame: int) -> None:
        """Key the current values at `frame` (what recording does after each apply)."""
        for mesh in self.meshes:
            for blocks in mesh.mapping.values():
                for block in blocks:
                    block.keyframe_insert("value", frame=frame)
        if self.bones is not None:
            for bone in self.bones.bones.values():
                bone.keyframe_insert("rotation_quaternion", frame=frame)

    def reset(self) -> None:
        """Zero the driven shape keys (new keys start at 1.0) and put the bones at rest."""
        for mesh in self.meshes:
            for blocks in mesh.mapping.values():
                for block in blocks:
                    block.value = 0.0
        if self.bones is not None:
            for bone in self.bones.bones.values():
                bone.rotation_quaternion = Quaternion()


def import_take(rig: FaceRig, track: Track, name: str) -> list[bpy.types.Action]:
    """New actions holding a resampled take: one per mesh's shape keys (one F-curve per driven key,
    the first mesh's action named `name`, the others `name.MESH`) and `name.bones` for the armature.

    Written with `foreach_set` (thousands of keys in milliseconds).
    """
    frames = track.frames.astype(np.float64)
    actions = []
    for number, mesh in enumerate(rig.meshes):
        action = _new_action(mesh.key, name if number == 0 else f"{name}.{mesh.obj.name}", "KEY")
        actions.append(action)
        if track.weights is None:
            continue
        bag = anim_utils.action_ensure_channelbag_for_slot(action, mesh.key.animation_data.action_slot)
        for index, blocks in mesh.mapping.items():
            co = np.column_stack([frames, track.weights[:, index]]).ravel()
            for block in blocks:
                _fcurve(bag, f'key_blocks["{block.name}"].value', 0, co)
    if rig.bones is not None and rig.bones.bones:
        armature = rig.bones.armature
        bone_action = _new_action(armature, f"{name}.bones", "OBJECT")
        actions.append(bone_action)
        bag = anim_utils.action_ensure_channelbag_for_slot(bone_action, armature.animation_data.action_slot)
        for role, rotations in rig.bones.rotations(track.weights, track.rotations).items():
            path = f'pose.bones["{rig.bones.bones[role].name}"].rotation_quaternion'
            values = np.array([tuple(q) for q in rotations])
            for component in range(4):
                _fcurve(bag, path, component, np.column_stack([frames, values[:, component]]).ravel())
    return actions


def _new_action(owner: bpy.types.ID, name: str, id_type: str) -> bpy.types.Action:
    action = bpy.data.actions.new(name)
    animation = owner.animation_data or owner.animation_data_create()
    slot = action.slots.new(id_type=id_type, name=owner.name)
    animation.action = action
    animation.action_slot = slot
    return action


def _fcurve(bag: bpy.types.ActionChannelbag, path: str, index: int, co: np.ndarray) -> None:
    curve = bag.fcurves.new(path, index=index)
    count = len(co) // 2
    curve.keyframe_points.add(count)
    curve.keyframe_points.foreach_set("co", co.astype(np.float32))
    curve.keyframe_points.foreach_set("interpolation", np.ones(count, np.int32))  # LINEAR: no overshoot
    curve.update()
