"""The README's picture: three frames of `facetrack demo`'s overlay video (open eyes, a blink, a wink).

    facetrack demo && python scripts/make_demo_picture.py [--overlay out/demo/overlay.mp4] [--out docs/images/demo.jpg]

The demo clip is made from a public-domain portrait (tracker/viz/demo_clip.py), so its overlay may be committed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np
from PIL import Image

FRAMES = (10, 29, 112)  # open, inside the second blink's first closure, inside the left wink (DemoClip defaults)
HEIGHT = 300
CROP = (slice(0, 300), slice(0, 400))  # the face and the overlay panel, without the space suit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--overlay", type=Path, default=Path("out/demo/overlay.mp4"))
    parser.add_argument("--out", type=Path, default=Path("docs/images/demo.jpg"))
    args = parser.parse_args()
    with av.open(str(args.overlay)) as container:
        frames = [f.to_ndarray(format="rgb24")[CROP] for i, f in enumerate(container.decode(video=0)) if i in FRAMES]
    strip = Image.fromarray(np.hstack(frames))
    strip = strip.resize((round(strip.width * HEIGHT / strip.height), HEIGHT), Image.LANCZOS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    strip.save(args.out, quality=80, optimize=True)
    print(f"{args.out}: {strip.width}x{strip.height}, {args.out.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
