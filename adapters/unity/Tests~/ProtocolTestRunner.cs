// Compiled with Mono (tests/test_unity_protocol.py) against Runtime/Protocol/*.cs, no Unity:
//   mono runner.exe decode FILE...   prints what each msgpack payload decodes to
//   mono runner.exe selftest         name matching and axis conversion checks
//   mono runner.exe keys SECRET SERVER   the CURVE keys CurveKeyFile reads, in hex
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using Facetrack.Protocol;

static class ProtocolTestRunner
{
    static int passed, failed;

    static string F(double v) { return v.ToString("R", CultureInfo.InvariantCulture); }

    static string Join(float[] values) { return values == null ? "null" : string.Join(",", values.Select(v => F(v))); }

    static void Decode(string path)
    {
        try
        {
            object message = FacetrackDecoder.Decode(File.ReadAllBytes(path));
            var meta = message as MetaMessage;
            if (meta != null)
            {
                Console.WriteLine("meta " + meta.StreamId + " " + meta.BlendshapeNames.Length + " " + meta.BlendshapeNames[0] + " " + meta.LandmarkCount);
                return;
            }
            var frame = (FrameMessage)message;
            Console.WriteLine("frame " + frame.StreamId + " " + frame.FrameIndex + " " + (frame.Pts.HasValue ? F(frame.Pts.Value) : "null")
                + " " + frame.Width + "x" + frame.Height + " faces " + frame.Faces.Count);
            foreach (var face in frame.Faces)
            {
                Console.WriteLine("face " + face.TrackId + " landmarks " + face.LandmarkCount + " first " + Join(face.Landmarks.Take(3).ToArray())
                    + " last " + Join(face.Landmarks.Skip(face.Landmarks.Length - 3).ToArray()));
                Console.WriteLine("rotation " + Join(face.Rotation) + " translation " + Join(face.Translation)
                    + " ypr " + F(face.Yaw) + "," + F(face.Pitch) + "," + F(face.Roll));
                Console.WriteLine("blendshapes " + Join(face.Blendshapes));
            }
        }
        catch (ProtocolException e)
        {
            Console.WriteLine("error ProtocolException " + e.Message);
        }
    }

    static void Check(bool ok, string what)
    {
        if (ok) passed++;
        else { failed++; Console.WriteLine("FAIL " + what); }
    }

    static float[] Rotate(float[] q, float[] v)
    {
        float x = q[0], y = q[1], z = q[2], w = q[3];
        return new[]
        {
            (1 - 2 * (y * y + z * z)) * v[0] + 2 * (x * y - z * w) * v[1] + 2 * (x * z + y * w) * v[2],
            2 * (x * y + z * w) * v[0] + (1 - 2 * (x * x + z * z)) * v[1] + 2 * (y * z - x * w) * v[2],
            2 * (x * z - y * w) * v[0] + 2 * (y * z + x * w) * v[1] + (1 - 2 * (x * x + y * y)) * v[2],
        };
    }

    static int Idx(string name) { return Array.IndexOf(BlendshapeNames.ArKit, name); }

    static void SelfTest()
    {
        var plain = BlendshapeNames.Match(BlendshapeNames.ArKit, null, null);
        Check(Enumerable.Range(0, 52).All(i => plain[i].SequenceEqual(new[] { i })), "exact ARKit names match themselves");

        var fbx = BlendshapeNames.ArKit.Select(n => "blendShape1." + n).ToList();
        Check(BlendshapeNames.Match(fbx, null, null).All(l => l.Count == 1), "FBX namespace prefixes are dropped");

        var custom = BlendshapeNames.ArKit.Select(n => "ARKit_" + char.ToUpperInvariant(n[0]) + n.Substring(1)).ToList();
        Check(BlendshapeNames.Match(custom, new[] { "ARKit_" }, null).All(l => l.Count == 1), "configured prefix, capitalised");

        var ict = new List<string> { "eyeBlink_L", "eyeBlink_R", "browInnerUp_L", "browInnerUp_R", "cheekPuff_L", "cheekPuff_R", "jawOpen", "mouthLeft" };
        var m = BlendshapeNames.Match(ict, null, null);
        Check(m[Idx("eyeBlinkLeft")].SequenceEqual(new[] { 0 }) && m[Idx("eyeBlinkRight")].SequenceEqual(new[] { 1 }), "ICT _L/_R");
        Check(m[Idx("browInnerUp")].SequenceEqual(new[] { 2, 3 }), "split browInnerUp drives both halves");
        Check(m[Idx("cheekPuff")].SequenceEqual(new[] { 4, 5 }), "split cheekPuff drives both halves");
        Check(m[Idx("mouthLeft")].SequenceEqual(new[] { 7 }) && m[Idx("tongueOut")].Count == 0, "mouthLeft kept, tongueOut absent");

        var over = BlendshapeNames.Match(new[] { "Blink_Left_Custom", "jawOpen" }, null, new Dictionary<string, string> { { "eyeBlinkLeft", "Blink_Left_Custom" } });
        Check(over[0].SequenceEqual(new[] { 0 }) && over[Idx("jawOpen")].SequenceEqual(new[] { 1 }), "overrides win");

        // +30 degrees yaw turns the face toward the subject's left: the avatar (x = its right) must face -x.
        float half = (float)(Math.PI / 12);
        var yaw = HeadPoseConversion.ToUnityBody(new[] { 0f, (float)Math.Sin(half), 0f, (float)Math.Cos(half) });
        var forward = Rotate(yaw, new[] { 0f, 0f, 1f });
        Check(Math.Abs(forward[0] + 0.5f) < 1e-5, "yaw to the subject's left turns the avatar to its left");
        var pitch = HeadPoseConversion.ToUnityBody(new[] { (float)Math.Sin(half), 0f, 0f, (float)Math.Cos(half) });
        Check(Rotate(pitch, new[] { 0f, 0f, 1f })[1] < 0, "positive pitch looks down");
        var roll = HeadPoseConversion.ToUnityBody(new[] { 0f, 0f, (float)Math.Sin(half), (float)Math.Cos(half) });
        Check(Rotate(roll, new[] { 0f, 1f, 0f })[0] > 0, "positive roll leans toward the avatar's right");
        var moved = HeadPoseConversion.ToUnityPosition(new[] { 10f, 5f, -60f });
        Check(Math.Abs(moved[0] + 0.1f) < 1e-6 && Math.Abs(moved[1] - 0.05f) < 1e-6 && Math.Abs(moved[2] + 0.6f) < 1e-6, "cm -> m, x mirrored");

        foreach (var bad in new[] { new byte[0], new byte[] { 0xc1 }, new byte[] { 0xdd, 0xff, 0xff, 0xff, 0xff }, new byte[] { 0x81, 0x01, 0x02 } })
        {
            try { FacetrackDecoder.Decode(bad); Check(false, "hostile payload accepted"); }
            catch (ProtocolException) { Check(true, "hostile payload"); }
        }
        Console.WriteLine(passed + " passed, " + failed + " failed");
    }

    static void Keys(string secretFile, string serverFile)
    {
        try
        {
            var client = CurveKeyFile.Read(secretFile, true);
            var server = CurveKeyFile.Read(serverFile, false);
            Console.WriteLine("client " + Hex(CurveKeyFile.Decode(client.PublicKey, secretFile)) + " " + Hex(CurveKeyFile.Decode(client.SecretKey, secretFile)));
            Console.WriteLine("server " + Hex(CurveKeyFile.Decode(server.PublicKey, serverFile)) + " " + (server.SecretKey == null ? "nosecret" : "secret"));
        }
        catch (ProtocolException e)
        {
            Console.WriteLine("error ProtocolException " + e.Message);
        }
    }

    static string Hex(byte[] bytes) { return BitConverter.ToString(bytes).Replace("-", "").ToLowerInvariant(); }

    static int Main(string[] args)
    {
        if (args.Length == 3 && args[0] == "keys") { Keys(args[1], args[2]); return 0; }
        if (args.Length > 0 && args[0] == "selftest") { SelfTest(); return failed == 0 ? 0 : 1; }
        if (args.Length > 0 && args[0] == "decode") { foreach (var path in args.Skip(1)) Decode(path); return 0; }
        Console.Error.WriteLine("usage: runner.exe selftest | decode FILE... | keys CLIENT.key_secret server.key");
        return 2;
    }
}
