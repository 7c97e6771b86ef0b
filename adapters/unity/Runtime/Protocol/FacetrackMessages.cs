// facetrack.frame/1 and facetrack.meta/1 as plain C# classes, decoded from msgpack payloads
// (no Unity dependency; see docs/protocol.md for the schema).
using System;
using System.Collections.Generic;

namespace Facetrack.Protocol
{
    public sealed class FaceMessage
    {
        public int TrackId;
        public float Score;
        /// <summary>x0, y0, x1, y1 in pixels.</summary>
        public float[] BBox;
        /// <summary>(N * 3) x, y pixels and relative depth, row-major.</summary>
        public float[] Landmarks;
        public int LandmarkCount;
        /// <summary>52 ARKit weights 0..1 in the metadata's order; null until the face-model fit runs.</summary>
        public float[] Blendshapes;
        /// <summary>Head rotation (x, y, z, w) head -> camera, right-handed camera frame (x right, y up, z toward the viewer).</summary>
        public float[] Rotation;
        /// <summary>Head centre in centimetres in the camera frame.</summary>
        public float[] Translation;
        public float Yaw, Pitch, Roll;
    }

    public sealed class FrameMessage
    {
        public string StreamId;
        public long FrameIndex;
        public double? Pts;
        public double CaptureTime;
        public double? PublishTime;
        public int Width, Height;
        public long DroppedFrames;
        public List<FaceMessage> Faces = new List<FaceMessage>();
    }

    public sealed class MetaMessage
    {
        public string StreamId;
        public string[] BlendshapeNames;
        public int LandmarkCount;
    }

    public static class FacetrackDecoder
    {
        public const string FrameSchema = "facetrack.frame/1";
        public const string MetaSchema = "facetrack.meta/1";
        public const int MaxMessageBytes = 16 * 1024 * 1024;

        /// <summary>A FrameMessage or a MetaMessage; anything else throws ProtocolException.</summary>
        public static object Decode(byte[] payload)
        {
            if (payload == null || payload.Length > MaxMessageBytes)
                throw new ProtocolException("payload missing or larger than " + MaxMessageBytes + " bytes");
            if (payload.Length > 0 && payload[0] == (byte)'{')
                throw new ProtocolException("JSON payload: publish with --wire msgpack (the default) for this client");
            var root = MsgPackReader.Read(payload) as Dictionary<string, object>;
            if (root == null) throw new ProtocolException("message is not a map");
            string schema = Get(root, "schema") as string;
            if (schema == MetaSchema) return DecodeMeta(root);
            if (schema == FrameSchema) return DecodeFrame(root);
            throw new ProtocolException("unknown schema '" + schema + "'");
        }

        static MetaMessage DecodeMeta(Dictionary<string, object> m)
        {
            var names = Get(m, "blendshape_names") as List<object>;
            if (names == null) throw new ProtocolException("metadata has no blendshape_names list");
            var meta = new MetaMessage { StreamId = Str(m, "stream_id"), LandmarkCount = (int)Int(m, "landmark_count") };
            meta.BlendshapeNames = new string[names.Count];
            for (int i = 0; i < names.Count; i++)
            {
                meta.BlendshapeNames[i] = names[i] as string;
                if (meta.BlendshapeNames[i] == null) throw new ProtocolException("blendshape_names[" + i + "] is not a string");
            }
            return meta;
        }

        static FrameMessage DecodeFrame(Dictionary<string, object> m)
        {
            var frame = new FrameMessage
            {
                StreamId = Str(m, "stream_id"),
                FrameIndex = Int(m, "frame_index"),
                Pts = OptNumber(m, "pts"),
                CaptureTime = Number(m, "capture_time"),
                PublishTime = OptNumber(m, "publish_time"),
                Width = (int)Int(m, "width"),
                Height = (int)Int(m, "height"),
                DroppedFrames = Int(m, "dropped_frames"),
            };
            var faces = Get(m, "faces") as List<object>;
            if (faces == null) throw new ProtocolException("faces is not a list");
            for (int i = 0; i < faces.Count; i++)
            {
                var f = faces[i] as Dictionary<string, object>;
                if (f == null) throw new ProtocolException("faces[" + i + "] is not a map");
                frame.Faces.Add(DecodeFace(f, "faces[" + i + "]"));
            }
            return frame;
        }

        static FaceMessage DecodeFace(Dictionary<string, object> f, string where)
        {
            var pose = Get(f, "pose") as Dictionary<string, object>;
            if (pose == null) throw new ProtocolException(where + ".pose is not a map");
            int[] shape;
            var face = new FaceMessage
            {
                TrackId = (int)Int(f, "track_id"),
                Score = (float)Number(f, "score"),
                BBox = Floats(Get(f, "bbox"), where + ".bbox", 4),
                Rotation = Floats(Get(pose, "rotation"), where + ".pose.rotation", 4),
                Translation = Floats(Get(pose, "translation"), where + ".pose.translation", 3),
                Yaw = (float)Number(pose, "yaw"),
                Pitch = (float)Number(pose, "pitch"),
                Roll = (float)Number(pose, "roll"),
                Landmarks = WireArray(Get(f, "landmarks"), where + ".landmarks", out shape),
            };
            if (shape.Length != 2 || shape[1] != 3) throw new ProtocolException(where + ".landmarks is not (N, 3)");
            face.LandmarkCount = shape[0];
            object blend = Get(f, "blendshapes");
            if (blend != null)
            {
                face.Blendshapes = WireArray(blend, where + ".blendshapes", out shape);
                if (shape.Length != 1) throw new ProtocolException(where + ".blendshapes is not 1-D");
            }
            return face;
        }

        /// <summary>The portable array map {dtype, shape, data} as floats (little-endian f2/f4/f8).</summary>
        public static float[] WireArray(object value, string where, out int[] shape)
        {
            var m = value as Dictionary<string, object>;
            if (m == null || m.Count != 3) throw new ProtocolException(where + " is not an array map {dtype, shape, data}");
            string dtype = Get(m, "dtype") as string;
            var dims = Get(m, "shape") as List<object>;
            var data = Get(m, "data") as byte[];
            if (dims == null || dims.Count < 1 || dims.Count > 4 || data == null)
                throw new ProtocolException(where + ": bad array shape or data");
            int size = dtype == "<f4" ? 4 : dtype == "<f8" ? 8 : dtype == "<f2" ? 2 : 0;
            if (size == 0) throw new ProtocolException(where + ": unsupported dtype '" + dtype + "'");
            shape = new int[dims.Count];
            long count = 1;
            for (int i = 0; i < dims.Count; i++)
            {
                if (!(dims[i] is long) || (long)dims[i] < 0 || (long)dims[i] > MaxMessageBytes)
                    throw new ProtocolException(where + ": bad dimension");
                shape[i] = (int)(long)dims[i];
                count *= shape[i];
            }
            if (count * size != data.Length)
                throw new ProtocolException(where + ": " + data.Length + " bytes for " + count + " values of " + dtype);
            var values = new float[count];
            for (int i = 0; i < count; i++)
            {
                int o = i * size;
                if (size == 4) values[i] = LittleEndianSingle(data, o);
                else if (size == 8) values[i] = (float)BitConverter.Int64BitsToDouble((long)LittleEndian(data, o, 8));
                else values[i] = HalfToSingle((ushort)LittleEndian(data, o, 2));
            }
            return values;
        }

        static ulong LittleEndian(byte[] d, int o, int size)
        {
            ulong v = 0;
            for (int i = size - 1; i >= 0; i--) v = (v << 8) | d[o + i];
            return v;
        }

        static float LittleEndianSingle(byte[] d, int o)
        {
            var b = new byte[] { d[o], d[o + 1], d[o + 2], d[o + 3] };
            if (!BitConverter.IsLittleEndian) Array.Reverse(b);
            return BitConverter.ToSingle(b, 0);
        }

        static float HalfToSingle(ushort h)
        {
            int sign = (h & 0x8000) != 0 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
            if (exp == 0) return sign * (float)Math.Pow(2, -14) * (frac / 1024f);
            if (exp == 31) return frac != 0 ? float.NaN : sign * float.PositiveInfinity;
            return sign * (float)Math.Pow(2, exp - 15) * (1 + frac / 1024f);
        }

        static object Get(Dictionary<string, object> m, string key)
        {
            object v;
            return m.TryGetValue(key, out v) ? v : null;
        }

        static string Str(Dictionary<string, object> m, string key)
        {
            var s = Get(m, key) as string;
            if (s == null) throw new ProtocolException(key + " is not a string");
            return s;
        }

        static long Int(Dictionary<string, object> m, string key)
        {
            object v = Get(m, key);
            if (!(v is long)) throw new ProtocolException(key + " is not an integer");
            return (long)v;
        }

        static double Number(Dictionary<string, object> m, string key)
        {
            double? v = OptNumber(m, key);
            if (v == null) throw new ProtocolException(key + " is not a number");
            return v.Value;
        }

        static double? OptNumber(Dictionary<string, object> m, string key)
        {
            object v = Get(m, key);
            if (v == null) return null;
            if (v is double) return (double)v;
            if (v is long) return (long)v;
            throw new ProtocolException(key + " is not a number");
        }

        static float[] Floats(object value, string where, int count)
        {
            var list = value as List<object>;
            if (list == null || list.Count != count) throw new ProtocolException(where + " is not a list of " + count + " numbers");
            var result = new float[count];
            for (int i = 0; i < count; i++)
            {
                if (list[i] is double) result[i] = (float)(double)list[i];
                else if (list[i] is long) result[i] = (long)list[i];
                else throw new ProtocolException(where + "[" + i + "] is not a number");
            }
            return result;
        }
    }
}
