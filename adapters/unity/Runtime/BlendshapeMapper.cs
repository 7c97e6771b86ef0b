// Maps a face's ARKit blendshapes to a SkinnedMeshRenderer's blendshapes (0-100 weights) and
// its head rotation (and optionally translation) to a transform.
using System;
using System.Collections.Generic;
using Facetrack.Protocol;
using UnityEngine;

namespace Facetrack
{
    [AddComponentMenu("facetrack/Blendshape Mapper")]
    public sealed class BlendshapeMapper : MonoBehaviour
    {
        [Serializable]
        public struct NameOverride
        {
            [Tooltip("ARKit name, e.g. eyeBlinkLeft")] public string arkit;
            [Tooltip("The mesh's blendshape name it drives")] public string blendshape;
        }

        [Tooltip("The face mesh; its blendshapes are matched to ARKit names")]
        public SkinnedMeshRenderer target;
        [Tooltip("Prefixes to strip from the mesh's blendshape names, e.g. 'blendShape1.' or 'ARKit_'")]
        public string[] prefixes = new string[0];
        [Tooltip("Explicit ARKit -> blendshape names; they win over automatic matching")]
        public NameOverride[] overrides = new NameOverride[0];
        [Tooltip("ARKit weights are 0..1; Unity blendshape weights are 0..100")]
        public float weightScale = 100f;

        [Tooltip("Head bone or object that follows the head rotation (optional)")]
        public Transform head;
        [Tooltip("The avatar's root (faces +z); the rotation is applied in its frame. Empty: world axes")]
        public Transform avatarRoot;
        [Tooltip("Also move the head by how far the subject's head moved since the first frame")]
        public bool applyTranslation;

        List<int>[] _map;
        Quaternion _restInRoot = Quaternion.identity;
        Vector3 _restLocalPosition;
        float[] _origin;

        /// <summary>How many ARKit names drive at least one blendshape of the target.</summary>
        public int MatchedCount { get; private set; }

        void Start() { Rebuild(); }

        /// <summary>Match names and remember the head's rest pose; call again after changing the target or names.</summary>
        public void Rebuild()
        {
            _map = null;
            MatchedCount = 0;
            if (target != null && target.sharedMesh != null)
            {
                var mesh = target.sharedMesh;
                var names = new List<string>(mesh.blendShapeCount);
                for (int i = 0; i < mesh.blendShapeCount; i++) names.Add(mesh.GetBlendShapeName(i));
                var map = new Dictionary<string, string>();
                foreach (var o in overrides)
                {
                    if (!string.IsNullOrEmpty(o.arkit)) map[o.arkit] = o.blendshape;
                }
                _map = BlendshapeNames.Match(names, prefixes, map);
                foreach (var hits in _map)
                {
                    if (hits.Count > 0) MatchedCount++;
                }
            }
            if (head != null)
            {
                Quaternion root = avatarRoot != null ? avatarRoot.rotation : Quaternion.identity;
                _restInRoot = Quaternion.Inverse(root) * head.rotation;
                _restLocalPosition = head.localPosition;
            }
            _origin = null;
        }

        /// <summary>Apply one face (main thread only). Blendshapes are skipped when the face has none yet.</summary>
        public void Apply(FaceMessage face)
        {
            if (_map != null && face.Blendshapes != null)
            {
                int count = Math.Min(face.Blendshapes.Length, _map.Length);
                for (int a = 0; a < count; a++)
                {
                    float weight = face.Blendshapes[a] * weightScale;
                    foreach (int index in _map[a]) target.SetBlendShapeWeight(index, weight);
                }
            }
            if (head == null) return;
            float[] q = HeadPoseConversion.ToUnityBody(face.Rotation);
            Quaternion body = new Quaternion(q[0], q[1], q[2], q[3]);
            Quaternion rootRotation = avatarRoot != null ? avatarRoot.rotation : Quaternion.identity;
            // The subject's rotation in the avatar's body frame, on top of the head's rest pose.
            head.rotation = rootRotation * body * _restInRoot;
            if (applyTranslation)
            {
                if (_origin == null) _origin = (float[])face.Translation.Clone();
                float[] moved = HeadPoseConversion.ToUnityPosition(new[]
                {
                    face.Translation[0] - _origin[0], face.Translation[1] - _origin[1], face.Translation[2] - _origin[2],
                });
                Vector3 delta = rootRotation * new Vector3(moved[0], moved[1], moved[2]);
                Vector3 local = head.parent != null ? head.parent.InverseTransformVector(delta) : delta;
                head.localPosition = _restLocalPosition + local;
            }
        }
    }
}
