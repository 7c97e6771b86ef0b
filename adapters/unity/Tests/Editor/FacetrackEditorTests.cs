// Edit Mode tests (Window > General > Test Runner), run when the project lists the package in
// "testables" (Packages/manifest.json): the mapper drives a real SkinnedMeshRenderer and head
// transform, and CURVE key files decode as ZeroMQ's Z85 test vector says.
using System.Linq;
using Facetrack.Protocol;
using NUnit.Framework;
using UnityEngine;

namespace Facetrack.Tests
{
    public sealed class FacetrackEditorTests
    {
        GameObject _root;

        [TearDown]
        public void TearDown()
        {
            if (_root != null) Object.DestroyImmediate(_root);
        }

        SkinnedMeshRenderer FaceWith(params string[] shapes)
        {
            _root = new GameObject("avatar");
            var mesh = new Mesh { vertices = new[] { Vector3.zero, Vector3.right, Vector3.up }, triangles = new[] { 0, 1, 2 } };
            var deltas = new Vector3[3];
            foreach (var name in shapes) mesh.AddBlendShapeFrame(name, 100f, deltas, null, null);
            var face = new GameObject("face").AddComponent<SkinnedMeshRenderer>();
            face.transform.SetParent(_root.transform, false);
            face.sharedMesh = mesh;
            return face;
        }

        [Test]
        public void MapperSetsBlendshapeWeightsByArkitNameAndTurnsTheHead()
        {
            var face = FaceWith("Basis_unused", "jawOpen", "EyeBlink_L", "eyeBlink_R");
            var head = new GameObject("head").transform;
            head.SetParent(_root.transform, false);
            var mapper = face.gameObject.AddComponent<BlendshapeMapper>();
            mapper.target = face;
            mapper.head = head;
            mapper.avatarRoot = _root.transform;
            mapper.Rebuild();
            Assert.AreEqual(3, mapper.MatchedCount);

            var weights = new float[52];
            weights[System.Array.IndexOf(BlendshapeNames.ArKit, "jawOpen")] = 0.25f;
            weights[System.Array.IndexOf(BlendshapeNames.ArKit, "eyeBlinkLeft")] = 1f;
            float half = Mathf.PI / 12;  // 30 degrees of yaw, toward the subject's left
            mapper.Apply(new FaceMessage
            {
                Blendshapes = weights,
                Rotation = new[] { 0f, Mathf.Sin(half), 0f, Mathf.Cos(half) },
                Translation = new[] { 0f, 0f, -60f },
            });
            Assert.AreEqual(25f, face.GetBlendShapeWeight(1), 1e-4);
            Assert.AreEqual(100f, face.GetBlendShapeWeight(2), 1e-4);
            Assert.AreEqual(0f, face.GetBlendShapeWeight(3), 1e-4);
            Assert.AreEqual(-0.5f, (head.rotation * Vector3.forward).x, 1e-4);  // the avatar turns to its left
        }

        [Test]
        public void CurveKeyFileDecodesZ85()
        {
            string key = string.Concat(Enumerable.Repeat("HelloWorld", 4));
            var pair = CurveKeyFile.Parse("curve\n    public-key = \"" + key + "\"\n    secret-key = \"" + key + "\"\n", "test");
            var bytes = CurveKeyFile.Decode(pair.SecretKey, "test");
            Assert.AreEqual(new byte[] { 0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B }, bytes.Take(8).ToArray());
            Assert.Throws<ProtocolException>(() => CurveKeyFile.Parse("curve\n", "test"));
        }
    }
}
