"""What a subscriber that stalls gets when it resumes: a live publisher (synthetic 1-face results at FPS),
a subscriber that reads, stops for STALL seconds, then drains; printed per Subscriber option: how many
messages came before the first fresh one (< 0.1 s old) and the age of the first one (RELIABILITY.md).

    python scripts/stalled_subscriber.py --fps 30 --stall 20
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

from facetrack.adapters.zmq_publisher import PublisherConfig, ZmqPublisher, live_sndhwm
from facetrack.adapters.zmq_subscriber import Subscriber
from facetrack.tracker.core.schema import FrameResult

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synthetic import synthetic_metadata, synthetic_result  # noqa: E402  (the tests' generator of results)


def probe(fps: float, stall: float, sndhwm: int, options: dict) -> tuple[float, int, int]:
    publisher = ZmqPublisher(PublisherConfig(endpoint="tcp://127.0.0.1:*", sndhwm=sndhwm))
    publisher.start(synthetic_metadata())
    stop = threading.Event()

    def publish() -> None:
        rng, index = np.random.default_rng(0), 0
        while not stop.wait(1 / fps):
            publisher.write(synthetic_result(rng, index))
            index += 1

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        with Subscriber(publisher.endpoint, topics="frame", **options) as sub:
            for _ in range(10):
                sub.recv(timeout=5)
            time.sleep(stall)
            ages = []
            while True:
                message = sub.recv(timeout=5)
                assert isinstance(message, FrameResult)
                ages.append(time.time() - message.publish_time)
                if ages[-1] < 0.1:
                    return ages[0], len(ages) - 1, sub.stale
    finally:
        stop.set()
        thread.join()
        publisher.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--stall", type=float, default=20.0)
    args = parser.parse_args()
    cases = [("sndhwm 1000, plain", 1000, {}), ("live sndhwm, plain", live_sndhwm(args.fps), {}),
             ("live sndhwm, max_age=0.5", live_sndhwm(args.fps), {"max_age": 0.5}),
             ("live sndhwm, newest_only", live_sndhwm(args.fps), {"newest_only": True})]
    for name, hwm, options in cases:
        first_age, before_fresh, stale = probe(args.fps, args.stall, hwm, options)
        print(f"{name:28s} first frame {first_age:6.2f} s old; {before_fresh:5d} stale frames returned before a "
              f"fresh one; {stale:5d} skipped")


if __name__ == "__main__":
    main()
