"""The batch pose encoder (PoseEncoder, behind encode_pose and PosePublisher.send_poses)
makes, byte for byte, what msgpack.packb makes of the documented pose3d map."""

from __future__ import annotations

import math

import msgpack
import numpy as np

from poselift.model.skeleton import H36M_JOINT_NAMES
from poselift.stream.protocol import PoseEncoder, PoseFields, decode_message, encode_pose


def reference(*, stream, frame, t, joints, valid, warmup, filled, latency_ms, gap=0, root=None, t_out,
              seq=None, rotations=None) -> bytes:
    """The pose3d map as docs/protocol.md lists it, packed by msgpack itself."""
    msg = {"v": 1, "type": "pose3d", "stream": stream, "frame": int(frame), "t": float(t), "t_out": float(t_out),
           "latency_ms": float(latency_ms), "layout": "h36m17", "joint_names": list(H36M_JOINT_NAMES),
           "joints": np.asarray(joints, dtype=np.float64).tolist(), "valid": bool(valid), "warmup": bool(warmup),
           "filled": [int(j) for j in filled], "gap": int(gap),
           "root": None if root is None else np.asarray(root, dtype=np.float64).reshape(3).tolist(),
           "rotations": None if rotations is None else np.asarray(rotations, dtype=np.float64).reshape(-1, 4).tolist()}
    if seq is not None:
        msg["seq"] = int(seq)
    return msgpack.packb(msg, use_bin_type=True)


def poses(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        joints = rng.normal(size=(17, 3)).astype(np.float32)
        if k % 7 == 0:
            joints[3] = [math.nan, math.inf, -0.0]
        out.append(dict(stream=f"cam{k}" * (k % 4 + 1), frame=int(rng.integers(0, 2**40)) if k % 2 else k,
                        t=float(rng.normal()) * 10**(k % 12), joints=joints, valid=bool(k % 2), warmup=bool(k % 3),
                        filled=list(range(k % 6)), latency_ms=float(rng.random()), gap=k % 4,
                        root=None if k % 2 else rng.normal(size=3), t_out=1.7e9 + k / 7,
                        seq=None if k % 5 == 0 else k * 100_003,
                        rotations=None if k % 3 == 0 else rng.normal(size=(19, 4))))
    return out


def test_encode_pose_is_byte_identical_to_packb():
    for kw in poses(120):
        assert encode_pose(**kw) == reference(**kw)


def test_a_batch_encodes_each_pose_as_alone():
    batch = poses(40, seed=1)
    fields = [PoseFields(p["stream"], p["frame"], p["t"], p["t_out"], p["latency_ms"], p["valid"], p["warmup"],
                         p["filled"], p["gap"], p["root"], p["rotations"], p["seq"]) for p in batch]
    out = PoseEncoder().encode(fields, np.stack([p["joints"] for p in batch]))
    assert out == [reference(**p) for p in batch]
    assert decode_message(out[1])["stream"] == batch[1]["stream"]
