// A small, bounded MessagePack reader for the facetrack wire subset (no Unity dependency).
//
// Decodes nil, bool, ints, float32/64, str, bin, array and map into plain .NET objects:
// null, bool, long, ulong, double, string, byte[], List<object>, Dictionary<string, object>.
// Ext types are refused (facetrack never sends them). Every length is checked against the
// bytes left and nesting is bounded, so hostile input ends in a ProtocolException.
// Users who already have MessagePack-CSharp can swap it in; this keeps the package
// dependency-free apart from NetMQ.
using System;
using System.Collections.Generic;
using System.Text;

namespace Facetrack.Protocol
{
    public sealed class ProtocolException : Exception
    {
        public ProtocolException(string message) : base(message) { }
    }

    public sealed class MsgPackReader
    {
        const int MaxDepth = 32;
        readonly byte[] _data;
        int _pos;

        MsgPackReader(byte[] data) { _data = data; }

        /// <summary>Decode one complete MessagePack value; trailing bytes are an error.</summary>
        public static object Read(byte[] data)
        {
            if (data == null) throw new ProtocolException("no payload");
            var reader = new MsgPackReader(data);
            object value = reader.ReadValue(0);
            if (reader._pos != data.Length)
                throw new ProtocolException("trailing bytes after the message: " + (data.Length - reader._pos));
            return value;
        }

        void Need(long count)
        {
            if (count < 0 || _pos + count > _data.Length)
                throw new ProtocolException("truncated message: need " + count + " bytes at offset " + _pos);
        }

        byte U8() { Need(1); return _data[_pos++]; }

        ulong BigEndian(int size)
        {
            Need(size);
            ulong v = 0;
            for (int i = 0; i < size; i++) v = (v << 8) | _data[_pos++];
            return v;
        }

        object ReadValue(int depth)
        {
            if (depth > MaxDepth) throw new ProtocolException("nested deeper than " + MaxDepth + " levels");
            byte b = U8();
            if (b <= 0x7f) return (long)b;
            if (b >= 0xe0) return (long)(sbyte)b;
            if ((b & 0xf0) == 0x80) return ReadMap(b & 0x0f, depth);
            if ((b & 0xf0) == 0x90) return ReadArray(b & 0x0f, depth);
            if ((b & 0xe0) == 0xa0) return ReadString(b & 0x1f);
            switch (b)
            {
                case 0xc0: return null;
                case 0xc2: return false;
                case 0xc3: return true;
                case 0xc4: return ReadBytes((long)BigEndian(1));
                case 0xc5: return ReadBytes((long)BigEndian(2));
                case 0xc6: return ReadBytes((long)BigEndian(4));
                case 0xca:
                {
                    uint bits = (uint)BigEndian(4);
                    return (double)BitConverter.ToSingle(BitConverter.GetBytes(bits), 0);
                }
                case 0xcb: return BitConverter.Int64BitsToDouble((long)BigEndian(8));
                case 0xcc: return (long)BigEndian(1);
                case 0xcd: return (long)BigEndian(2);
                case 0xce: return (long)BigEndian(4);
                case 0xcf:
                {
                    ulong v = BigEndian(8);
                    return v <= long.MaxValue ? (object)(long)v : v;
                }
                case 0xd0: return (long)(sbyte)BigEndian(1);
                case 0xd1: return (long)(short)BigEndian(2);
                case 0xd2: return (long)(int)BigEndian(4);
                case 0xd3: return (long)BigEndian(8);
                case 0xd9: return ReadString((long)BigEndian(1));
                case 0xda: return ReadString((long)BigEndian(2));
                case 0xdb: return ReadString((long)BigEndian(4));
                case 0xdc: return ReadArray((long)BigEndian(2), depth);
                case 0xdd: return ReadArray((long)BigEndian(4), depth);
                case 0xde: return ReadMap((long)BigEndian(2), depth);
                case 0xdf: return ReadMap((long)BigEndian(4), depth);
                default: throw new ProtocolException("unsupported MessagePack type 0x" + b.ToString("x2") + " at offset " + (_pos - 1));
            }
        }

        byte[] ReadBytes(long length)
        {
            Need(length);
            var bytes = new byte[length];
            Buffer.BlockCopy(_data, _pos, bytes, 0, (int)length);
            _pos += (int)length;
            return bytes;
        }

        string ReadString(long length)
        {
            Need(length);
            string s = Encoding.UTF8.GetString(_data, _pos, (int)length);
            _pos += (int)length;
            return s;
        }

        List<object> ReadArray(long count, int depth)
        {
            Need(count);  // every element takes at least one byte
            var list = new List<object>((int)count);
            for (long i = 0; i < count; i++) list.Add(ReadValue(depth + 1));
            return list;
        }

        Dictionary<string, object> ReadMap(long count, int depth)
        {
            Need(count * 2);
            var map = new Dictionary<string, object>((int)count);
            for (long i = 0; i < count; i++)
            {
                string key = ReadValue(depth + 1) as string;
                if (key == null) throw new ProtocolException("map key is not a string at offset " + _pos);
                map[key] = ReadValue(depth + 1);
            }
            return map;
        }
    }
}
