"""Build the bundled demo clip: a held-out mocap take seen through a fixed virtual camera.

``poselift demo`` replays it (stream/assets/demo_clip.npz), so the README's first command
needs no camera and no network peer. Reproduce with::

    python -m poselift.train.demo_clip ../shared/data/mocap/cmu/indian/04.bvh.gz stream/assets/demo_clip.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from .bvh import load_h36m_positions
from .cameras import Corruption
from .generators import protocol_views


def make_demo_clip(bvh_path: str | Path, out: str | Path, fps: float = 30.0, start: int = 0, frames: int = 300,
                   distance: float = 4.5, noise_px: float = 1.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Project ``frames`` frames of a take through a 1280x720 camera and save the clip.

    Keys: ``keypoints`` (T, 17, 2) float32 pixels (h36m17 layout, mild Gaussian noise of
    ``noise_px`` px like a good detector), ``poses3d`` (T, 17, 3) root-relative camera metres,
    ``width``, ``height``, ``fps``, ``source``.
    """
    world = load_h36m_positions(bvh_path, fps=fps)[start:start + frames]
    px, pose = protocol_views(world, cameras=1, distance=distance, corruption=Corruption(noise_px=noise_px),
                              seed=seed)[0]
    clip = {
        "keypoints": px.numpy().astype(np.float32),
        "poses3d": pose.numpy().astype(np.float32),
        "width": np.int64(1280),
        "height": np.int64(720),
        "fps": np.float64(fps),
        "source": np.str_(f"CMU mocap {Path(bvh_path).parent.name}/{Path(bvh_path).name}, frames {start}-{start + frames} "
                          f"at {fps:g} fps, virtual 1280x720 camera at {distance} m, {noise_px} px noise"),
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **clip)
    return clip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bvh")
    p.add_argument("out")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--frames", type=int, default=300)
    args = p.parse_args()
    clip = make_demo_clip(args.bvh, args.out, start=args.start, frames=args.frames)
    print(f"wrote {args.out}: {clip['keypoints'].shape[0]} frames; {clip['source']}")


if __name__ == "__main__":
    main()
