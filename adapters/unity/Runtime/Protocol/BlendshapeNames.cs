// ARKit blendshape names and their matching to a rig's blendshape names (no Unity dependency).
using System;
using System.Collections.Generic;

namespace Facetrack.Protocol
{
    public static class BlendshapeNames
    {
        /// <summary>Apple ARKit's 52 names in facetrack's wire order ("Left" = the subject's left).</summary>
        public static readonly string[] ArKit =
        {
            "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
            "eyeSquintLeft", "eyeWideLeft",
            "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
            "eyeSquintRight", "eyeWideRight",
            "jawForward", "jawLeft", "jawRight", "jawOpen",
            "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
            "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
            "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
            "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
            "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
            "mouthUpperUpLeft", "mouthUpperUpRight",
            "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
            "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
            "noseSneerLeft", "noseSneerRight",
            "tongueOut",
        };

        /// <summary>
        /// "blendShape1.eyeBlink_L" -> "eyeblinkleft": drops a configured prefix (else anything up to
        /// the last '.', ':' or '|' that is not a side suffix), turns _L/.L/Left into "left", lower-cases.
        /// </summary>
        public static string Canonical(string name, IList<string> prefixes)
        {
            bool stripped = false;
            if (prefixes != null)
            {
                foreach (string prefix in prefixes)
                {
                    if (!string.IsNullOrEmpty(prefix) && name.StartsWith(prefix, StringComparison.Ordinal))
                    {
                        name = name.Substring(prefix.Length);
                        stripped = true;
                        break;
                    }
                }
            }
            string side;
            string stem = SplitSide(name, out side);
            if (!stripped)
            {
                int cut = Math.Max(stem.LastIndexOf('.'), Math.Max(stem.LastIndexOf(':'), stem.LastIndexOf('|')));
                if (cut >= 0) stem = stem.Substring(cut + 1);
            }
            return (stem + side).ToLowerInvariant();
        }

        static string SplitSide(string name, out string side)
        {
            side = "";
            int n = name.Length;
            if (n >= 2 && (name[n - 2] == '_' || name[n - 2] == '.'))
            {
                char c = char.ToUpperInvariant(name[n - 1]);
                if (c == 'L' || c == 'R')
                {
                    side = c == 'L' ? "left" : "right";
                    return name.Substring(0, n - 2);
                }
            }
            foreach (string s in new[] { "Left", "Right", "left", "right" })
            {
                if (name.EndsWith(s, StringComparison.Ordinal))
                {
                    side = s.ToLowerInvariant();
                    return name.Substring(0, n - s.Length);
                }
            }
            return name;
        }

        /// <summary>
        /// For each ARKit index, the rig blendshape indices it drives. Overrides (ARKit name -> rig
        /// name) win; an ARKit name without a side (browInnerUp, cheekPuff) drives both halves of a
        /// split rig (browInnerUp_L and _R) when there is no unsplit shape. Unmatched names get none.
        /// </summary>
        public static List<int>[] Match(IList<string> rigNames, IList<string> prefixes, IDictionary<string, string> overrides)
        {
            var byCanon = new Dictionary<string, List<int>>();
            var byName = new Dictionary<string, int>();
            for (int i = 0; i < rigNames.Count; i++)
            {
                string canon = Canonical(rigNames[i], prefixes);
                List<int> list;
                if (!byCanon.TryGetValue(canon, out list)) byCanon[canon] = list = new List<int>();
                list.Add(i);
                if (!byName.ContainsKey(rigNames[i])) byName[rigNames[i]] = i;
            }
            var result = new List<int>[ArKit.Length];
            for (int a = 0; a < ArKit.Length; a++)
            {
                var found = new List<int>();
                string target;
                int index;
                if (overrides != null && overrides.TryGetValue(ArKit[a], out target))
                {
                    if (byName.TryGetValue(target, out index)) found.Add(index);
                }
                else
                {
                    string canon = ArKit[a].ToLowerInvariant();
                    List<int> hits;
                    if (byCanon.TryGetValue(canon, out hits)) found.AddRange(hits);
                    else if (!canon.EndsWith("left") && !canon.EndsWith("right"))
                    {
                        if (byCanon.TryGetValue(canon + "left", out hits)) found.AddRange(hits);
                        if (byCanon.TryGetValue(canon + "right", out hits)) found.AddRange(hits);
                    }
                }
                result[a] = found;
            }
            return result;
        }
    }

    public static class HeadPoseConversion
    {
        /// <summary>
        /// facetrack's head rotation (x, y, z, w; right-handed; head frame = subject's left, up, out of
        /// the face) -> a rotation in a Unity avatar's body frame (left-handed: its right, up, forward).
        /// Conjugating by the reflection diag(-1, 1, 1) gives (x, -y, -z, w): the avatar makes the
        /// subject's own motion (turn to your left, it turns to its left).
        /// </summary>
        public static float[] ToUnityBody(float[] rotation)
        {
            if (rotation == null || rotation.Length != 4) throw new ArgumentException("rotation must be x, y, z, w");
            return new[] { rotation[0], -rotation[1], -rotation[2], rotation[3] };
        }

        /// <summary>A displacement in facetrack's camera frame (cm) in the avatar's body frame (m).</summary>
        public static float[] ToUnityPosition(float[] translationCm)
        {
            return new[] { -translationCm[0] / 100f, translationCm[1] / 100f, translationCm[2] / 100f };
        }
    }
}
