// Reads the CURVE key files that `facetrack keys init KEYS --client unity` writes (ZeroMQ's
// certificate format, keys in Z85), so a Unity client can join an encrypted stream. No Unity or
// NetMQ dependency: FacetrackSubscriber hands the keys to NetMQ.
using System;
using System.IO;
using System.Text.RegularExpressions;

namespace Facetrack.Protocol
{
    public sealed class CurveKeyPair
    {
        /// <summary>The public key, 40 Z85 characters.</summary>
        public string PublicKey;
        /// <summary>The secret key, 40 Z85 characters; null in a public-only file such as server.key.</summary>
        public string SecretKey;
    }

    public static class CurveKeyFile
    {
        const string Alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
        static readonly Regex Entry = new Regex("^\\s*(public-key|secret-key)\\s*=\\s*\"([^\"]*)\"\\s*$", RegexOptions.Multiline);

        /// <summary>The keys in a certificate file's text; ProtocolException when it holds no valid public key.</summary>
        public static CurveKeyPair Parse(string text, string where)
        {
            var pair = new CurveKeyPair();
            foreach (Match m in Entry.Matches(text ?? ""))
            {
                string value = m.Groups[2].Value;
                Decode(value, where);  // validates
                if (m.Groups[1].Value == "public-key") pair.PublicKey = value;
                else pair.SecretKey = value;
            }
            if (pair.PublicKey == null)
                throw new ProtocolException(where + ": no public-key; pass a file from `facetrack keys init`");
            return pair;
        }

        /// <summary>Read a key file: the client's clients/NAME.key_secret or the server's server.key.</summary>
        public static CurveKeyPair Read(string path, bool needSecret)
        {
            string text;
            try { text = File.ReadAllText(path); }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException || e is ArgumentException || e is NotSupportedException)
            {
                throw new ProtocolException("cannot read CURVE key " + path + ": " + e.Message);
            }
            var pair = Parse(text, path);
            if (needSecret && pair.SecretKey == null)
                throw new ProtocolException(path + " holds no secret key: pass the client's .key_secret file");
            return pair;
        }

        /// <summary>A 40-character Z85 key as its 32 bytes (ZeroMQ RFC 32).</summary>
        public static byte[] Decode(string z85, string where)
        {
            if (z85 == null || z85.Length != 40)
                throw new ProtocolException(where + ": a CURVE key is 40 Z85 characters, got " + (z85 == null ? 0 : z85.Length));
            var bytes = new byte[32];
            for (int block = 0; block < 8; block++)
            {
                ulong value = 0;
                for (int i = 0; i < 5; i++)
                {
                    int digit = Alphabet.IndexOf(z85[block * 5 + i]);
                    if (digit < 0) throw new ProtocolException(where + ": '" + z85[block * 5 + i] + "' is not a Z85 character");
                    value = value * 85 + (ulong)digit;
                }
                if (value > uint.MaxValue) throw new ProtocolException(where + ": Z85 block out of range");
                for (int i = 0; i < 4; i++) bytes[block * 4 + i] = (byte)(value >> (24 - 8 * i));
            }
            return bytes;
        }
    }
}
