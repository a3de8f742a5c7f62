"""Motion outputs of the live commands: the ``--vmc`` sender as a loop stage, and the checks
that make a bad ``--bvh``/``--vmc`` argument fail at start with one line (issue 13).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from poselift.errors import UserError

from .engine import PoseOut
from .motion_wire import MotionFrame
from .vmc import DEFAULT_PORT, VMCSender


def parse_vmc_target(target: str) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST`` (default port 39539) or ``[IPv6]:PORT`` -> (host, port)."""
    text = target.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise UserError(f"--vmc {target!r}: expected HOST:PORT, e.g. 127.0.0.1:{DEFAULT_PORT}")
    if not port_text:
        return host, DEFAULT_PORT
    try:
        return host, int(port_text)
    except ValueError:
        raise UserError(f"--vmc {target!r}: the port must be an integer from 1 to 65535") from None


def open_vmc(target: str | None, allow_remote: bool = False) -> VMCSender | None:
    """A :class:`VMCSender` for ``--vmc HOST:PORT`` (None: no VMC); one-line errors."""
    if not target:
        return None
    host, port = parse_vmc_target(target)
    return VMCSender(host, port, allow_remote=allow_remote)


def check_writable(path: str | os.PathLike, option: str = "--bvh") -> Path:
    """Fail now, with one line, if ``path`` cannot be written (not at the end of a long run)."""
    p = Path(path)
    existed = p.exists()
    try:
        with open(p, "ab"):
            pass
    except OSError as exc:
        raise UserError(f"{option} {path}: cannot write there ({exc.strerror or exc})") from None
    if not existed:
        p.unlink()
    return p


def vmc_root(motion: MotionFrame, has_root: bool) -> np.ndarray | None:
    """The VMC avatar root for a pose: None (the origin) without a trajectory; with one, the
    point under the Hips at standing height, so that the Hips land on the moving pelvis."""
    if not has_root:
        return None
    standing = -(motion.offsets[5, 1] + motion.offsets[6, 1])  # left shin + thigh (rest: along -y)
    return motion.hips - np.array([0.0, standing, 0.0])


class VMCStage:
    """``PoseLoop`` stage (after :class:`stream.motion_wire.MotionWire`) that sends every pose
    with usable rotations to a VMC receiver; poses pass through unchanged."""

    def __init__(self, sender: VMCSender) -> None:
        self.sender = sender

    def __call__(self, poses: list[PoseOut]) -> list[PoseOut]:
        for p in poses:
            send_vmc(self.sender, p.extras.get("motion"), p.t, p.root is not None)
        return poses


def replay_vmc(sender: VMCSender, arrays: dict, fps: float) -> int:
    """Send an offline take (``video_arrays``) to a VMC receiver at ``fps``; returns how many
    poses were sent (frames without usable rotations are skipped)."""
    from poselift.model.rig import rest_offsets

    has_root = "trajectory" in arrays
    t0 = time.perf_counter()
    sent = 0
    for i in range(len(arrays["rotations"])):
        delay = t0 + i / fps - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        motion = MotionFrame(arrays["rotations"][i], arrays["root"][i], rest_offsets(arrays["bone_lengths"][i]),
                             arrays["bone_lengths"][i], bool(arrays["motion_valid"][i]), bool(arrays["settled"][i]),
                             False)
        sent += send_vmc(sender, motion, i / fps, has_root)
    return sent


def send_vmc(sender: VMCSender, motion: MotionFrame | None, t: float, has_root: bool) -> bool:
    """Send one pose's motion if it is usable; returns whether it was sent."""
    if motion is None or not motion.valid:
        return False
    sender.send(motion.rotations, motion.offsets, t, root=vmc_root(motion, has_root))
    return True
