"""Receive a facetrack stream in Python and print each face's head pose and strongest blendshapes.

    facetrack run webcam:0 --publish          # in one terminal
    python examples/python_subscriber.py       # in another (Ctrl-C to stop)
"""

from __future__ import annotations

import argparse

from facetrack.adapters.zmq_subscriber import Subscriber
from facetrack.tracker.core.schema import FrameResult


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5557")
    parser.add_argument("--count", type=int, default=None, help="Stop after N frames.")
    parser.add_argument("--timeout", type=float, default=None, help="Stop after this many seconds without a frame.")
    args = parser.parse_args()
    frames = 0
    with Subscriber(args.endpoint, topics=("frame",)) as subscriber:
        while args.count is None or frames < args.count:
            message = subscriber.recv(timeout=args.timeout)
            if message is None:
                print(f"no frame for {args.timeout} s")
                break
            if not isinstance(message, FrameResult):
                continue
            frames += 1
            for face in message.faces:
                top = sorted(face.blendshape_dict().items(), key=lambda kv: -kv[1])[:3]
                shapes = " ".join(f"{name}={value:.2f}" for name, value in top) or "(no blendshapes yet)"
                print(f"frame {message.frame_index} face {face.track_id}: yaw {face.pose.yaw:+.1f} "
                      f"pitch {face.pose.pitch:+.1f} roll {face.pose.roll:+.1f}  {shapes}")


if __name__ == "__main__":
    main()
