// Receives the facetrack ZeroMQ stream on a background thread and applies the newest frame
// on Unity's main thread (Unity objects may only be touched there).
using System;
using System.Collections.Generic;
using System.Threading;
using Facetrack.Protocol;
using NetMQ;
using NetMQ.Sockets;
using UnityEngine;

namespace Facetrack
{
    [AddComponentMenu("facetrack/Facetrack Subscriber")]
    public sealed class FacetrackSubscriber : MonoBehaviour
    {
        [Tooltip("The publisher's endpoint: facetrack run ... --publish [ENDPOINT]")]
        public string endpoint = "tcp://127.0.0.1:5557";
        [Tooltip("Only this stream id (empty: every stream)")]
        public string streamId = "";
        [Tooltip("Face track to follow (-1: the first face of each frame)")]
        public int trackId = -1;
        [Tooltip("Mappers that receive the chosen face every frame")]
        public BlendshapeMapper[] mappers = new BlendshapeMapper[0];

        [Header("CURVE encryption (publisher started with --curve-keys KEYS)")]
        [Tooltip("This client's KEYS/clients/unity.key_secret from `facetrack keys init KEYS --client unity` (empty: no encryption). Relative paths start at the working directory: the project folder in the Editor")]
        public string clientSecretKeyFile = "";
        [Tooltip("The publisher's KEYS/server.key (public)")]
        public string serverPublicKeyFile = "";

        /// <summary>Raised on the main thread with the newest frame (frames in between are skipped).</summary>
        public event Action<FrameMessage> FrameReceived;

        /// <summary>The last metadata received (null until the publisher's periodic metadata arrives).</summary>
        public MetaMessage Metadata { get; private set; }
        public long FramesReceived { get { return Interlocked.Read(ref _received); } }
        public long Malformed { get { return Interlocked.Read(ref _malformed); } }

        static int _open;
        readonly object _lock = new object();
        FrameMessage _latest;
        MetaMessage _latestMeta;
        Thread _thread;
        CurveKeyPair _clientKeys, _serverKeys;
        volatile bool _running;
        long _received, _malformed;

        void OnEnable()
        {
            if (!LoadCurveKeys()) { enabled = false; return; }
            _running = true;
            Interlocked.Increment(ref _open);
            _thread = new Thread(Receive) { IsBackground = true, Name = "facetrack subscriber" };
            _thread.Start();
        }

        /// <summary>Read the CURVE key files (on the main thread, before connecting); false with the reason logged.</summary>
        bool LoadCurveKeys()
        {
            _clientKeys = _serverKeys = null;
            bool client = !string.IsNullOrEmpty(clientSecretKeyFile), server = !string.IsNullOrEmpty(serverPublicKeyFile);
            if (!client && !server) return true;
            if (client != server)
            {
                Debug.LogError("facetrack: set both clientSecretKeyFile and serverPublicKeyFile (or neither)", this);
                return false;
            }
            try
            {
                _clientKeys = CurveKeyFile.Read(clientSecretKeyFile, true);
                _serverKeys = CurveKeyFile.Read(serverPublicKeyFile, false);
                return true;
            }
            catch (ProtocolException e)
            {
                Debug.LogError("facetrack: " + e.Message, this);
                return false;
            }
        }

        void OnDisable()
        {
            if (_thread == null) return;
            _running = false;
            if (_thread != null && !_thread.Join(1000)) Debug.LogWarning("facetrack: receive thread did not stop in 1 s");
            _thread = null;
            // NetMQ's background poller keeps Unity's editor from reloading: release it with the last subscriber.
            if (Interlocked.Decrement(ref _open) == 0) NetMQConfig.Cleanup(false);
        }

        void Receive()
        {
            AsyncIO.ForceDotNet.Force();  // NetMQ's own I/O completion ports do not work under Unity's Mono
            string suffix = string.IsNullOrEmpty(streamId) ? "" : "." + streamId;
            using (var socket = new SubscriberSocket())
            {
                socket.Options.ReceiveHighWatermark = 100;
                socket.Options.MaxMsgSize = FacetrackDecoder.MaxMessageBytes;
                socket.Options.Linger = TimeSpan.Zero;
                if (_clientKeys != null)
                {
                    socket.Options.CurveServerKey = CurveKeyFile.Decode(_serverKeys.PublicKey, serverPublicKeyFile);
                    socket.Options.CurveCertificate = new NetMQCertificate(_clientKeys.SecretKey, _clientKeys.PublicKey);
                }
                socket.Connect(endpoint);
                socket.Subscribe("frame" + suffix);
                socket.Subscribe("meta" + suffix);
                var parts = new List<byte[]>();
                while (_running)
                {
                    if (!socket.TryReceiveMultipartBytes(TimeSpan.FromMilliseconds(100), ref parts, 2)) continue;
                    if (parts.Count != 2) { Interlocked.Increment(ref _malformed); continue; }
                    try
                    {
                        object message = FacetrackDecoder.Decode(parts[1]);
                        lock (_lock)
                        {
                            var frame = message as FrameMessage;
                            if (frame != null) _latest = frame;
                            else _latestMeta = (MetaMessage)message;
                        }
                        if (message is FrameMessage) Interlocked.Increment(ref _received);
                    }
                    catch (ProtocolException)
                    {
                        Interlocked.Increment(ref _malformed);
                    }
                }
            }
        }

        void Update()
        {
            FrameMessage frame;
            lock (_lock)
            {
                frame = _latest;
                _latest = null;
                if (_latestMeta != null) { Metadata = _latestMeta; _latestMeta = null; }
            }
            if (frame == null) return;
            FaceMessage face = null;
            foreach (var f in frame.Faces)
            {
                if (trackId < 0 || f.TrackId == trackId) { face = f; break; }
            }
            if (face != null)
            {
                foreach (var mapper in mappers)
                {
                    if (mapper != null) mapper.Apply(face);
                }
            }
            if (FrameReceived != null) FrameReceived(frame);
        }
    }
}
