"""Apply face samples to Blender data: shape keys, an optional head bone, keyframes, actions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import bpy
from bpy_extras import anim_utils
from mathutils import Quaternion

from .core import ARKIT_BLENDSHAPES, FaceSample, blender_rotation, frame_numbers, match_shape_keys


class FaceTarget:
    """The shape keys of one mesh object (and optionally one pose bone) that samples drive."""

    def __init__(
        self,
        obj: bpy.types.Object,
        prefixes: Sequence[str] = (),
        overrides: Mapping[str, str | Sequence[str]] | None = None,
        armature: bpy.types.Object | None = None,
        head_bone: str = "",
    ) -> None:
        keys = obj.data.shape_keys if obj.type == "MESH" else None
        if keys is None:
            raise ValueError(f"{obj.name!r} has no shape keys: select a mesh with ARKit-named shape keys")
        self.obj = obj
        self.key = keys
        names = [block.name for block in keys.key_blocks if block != keys.reference_key]
        self.mapping = {
            index: [keys.key_blocks[name] for name in found if name in keys.key_blocks]
            for index, found in match_shape_keys(names, prefixes, overrides).items()
        }
        self.pose_bone: bpy.types.PoseBone | None = None
        self._rest = Quaternion()
        if head_bone:
            if armature is None or armature.type != "ARMATURE" or head_bone not in armature.pose.bones:
                raise ValueError(f"no pose bone {head_bone!r} on {getattr(armature, 'name', None)!r}")
            self.pose_bone = armature.pose.bones[head_bone]
            self.pose_bone.rotation_mode = "QUATERNION"
            self._rest = armature.matrix_world.to_quaternion() @ self.pose_bone.bone.matrix_local.to_quaternion()

    @property
    def matched(self) -> list[str]:
        """The ARKit names that drive at least one shape key."""
        return [ARKIT_BLENDSHAPES[i] for i, blocks in sorted(self.mapping.items()) if blocks]

    def apply(self, sample: FaceSample) -> None:
        """Set shape-key values (and the head bone) from one sample."""
        if sample.blendshapes is not None:
            for index, blocks in self.mapping.items():
                value = sample.blendshapes[index]
                for block in blocks:
                    block.value = value
        if self.pose_bone is not None:
            self.pose_bone.rotation_quaternion = self.bone_rotation(sample)

    def bone_rotation(self, sample: FaceSample) -> Quaternion:
        """The head's rotation in world axes, expressed in the bone's rest frame (parents at rest)."""
        return self._rest.inverted() @ Quaternion(blender_rotation(sample.rotation)) @ self._rest

    def insert_keys(self, frame: int) -> None:
        """Key the current values at `frame` (what recording does after each apply)."""
        for blocks in self.mapping.values():
            for block in blocks:
                block.keyframe_insert("value", frame=frame)
        if self.pose_bone is not None:
            self.pose_bone.keyframe_insert("rotation_quaternion", frame=frame)

    def reset(self) -> None:
        """Zero the driven shape keys (new keys start at 1.0) and put the bone at rest."""
        for blocks in self.mapping.values():
            for block in blocks:
                block.value = 0.0
        if self.pose_bone is not None:
            self.pose_bone.rotation_quaternion = Quaternion()


def import_take(
    target: FaceTarget,
    samples: Sequence[FaceSample],
    name: str,
    fps: float,
    start_frame: int = 1,
) -> bpy.types.Action:
    """A new action on the shape keys holding the take (one F-curve per driven key).

    Written with `foreach_set` (thousands of keys in milliseconds) and assigned to the
    shape keys; the head bone, if any, gets its own action on the armature.
    """
    frames = frame_numbers(samples, fps, start_frame)
    action = _new_action(target.key, name, "KEY")
    bag = anim_utils.action_ensure_channelbag_for_slot(action, target.key.animation_data.action_slot)
    keyed = [(f, s) for f, s in zip(frames, samples) if s.blendshapes is not None]
    for index, blocks in target.mapping.items():
        co = [v for f, s in keyed for v in (f, s.blendshapes[index])]  # type: ignore[index]
        for block in blocks:
            _fcurve(bag, f'key_blocks["{block.name}"].value', 0, co)
    if target.pose_bone is not None:
        armature = target.pose_bone.id_data
        bone_action = _new_action(armature, f"{name}.head", "OBJECT")
        bone_bag = anim_utils.action_ensure_channelbag_for_slot(bone_action, armature.animation_data.action_slot)
        local = [target.bone_rotation(s) for s in samples]
        path = f'pose.bones["{target.pose_bone.name}"].rotation_quaternion'
        for component in range(4):
            _fcurve(bone_bag, path, component, [v for f, q in zip(frames, local) for v in (f, q[component])])
    return action


def _new_action(owner: bpy.types.ID, name: str, id_type: str) -> bpy.types.Action:
    action = bpy.data.actions.new(name)
    animation = owner.animation_data or owner.animation_data_create()
    slot = action.slots.new(id_type=id_type, name=owner.name)
    animation.action = action
    animation.action_slot = slot
    return action


def _fcurve(bag: bpy.types.ActionChannelbag, path: str, index: int, co: list[float]) -> None:
    curve = bag.fcurves.new(path, index=index)
    curve.keyframe_points.add(len(co) // 2)
    curve.keyframe_points.foreach_set("co", co)
    curve.keyframe_points.foreach_set("interpolation", [1] * (len(co) // 2))  # LINEAR: video samples, no overshoot
    curve.update()
