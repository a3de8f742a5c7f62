"""The offline ``video`` path and the live path share one intake and one loop: the same 2D
sequence (no person at the start, a short and a long run of empty frames, a low-confidence
joint) gives the same poses and validity flags through ``serve`` (over ZeroMQ, ended with
the protocol's ``end`` message) and through ``video`` (without the detector)."""

import time

import numpy as np
import pytest

from poselift.model.skeleton import H36M_JOINT_NAMES, MEDIAPIPE33_JOINT_NAMES
from poselift.stream.apps import video_arrays
from poselift.stream.client import KeypointSender, PoseReceiver
from poselift.stream.engine import LiftEngine
from poselift.stream.protocol import Frame2D
from poselift.stream.service import PoseServer
from tests.helpers import random_model
from tests.stream_helpers import HEIGHT, WIDTH, ServerThread, project, synthetic_poses

T = 80
EMPTY = [0, 1, 2, *range(21, 25), *range(41, 61)]  # 3 before any person, 4 held (invalid), 20: a reset


def mediapipe_frames() -> list[Frame2D]:
    """What MediaPipe would give for a synthetic person: (33, 2) pixels and confidences."""
    h36m = project(synthetic_poses(T))
    index = {n: i for i, n in enumerate(H36M_JOINT_NAMES)}
    frames = []
    for t in range(T):
        kp = np.repeat(h36m[t, :1], 33, axis=0)  # points the H36M joints do not use: on the pelvis
        for j, name in enumerate(MEDIAPIPE33_JOINT_NAMES):
            if name in index:
                kp[j] = h36m[t, index[name]]
        kp[MEDIAPIPE33_JOINT_NAMES.index("nose")] = h36m[t, index["neck_nose"]]
        for side, dx in (("left_eye", 6.0), ("right_eye", -6.0)):
            kp[MEDIAPIPE33_JOINT_NAMES.index(side)] = h36m[t, index["head"]] + [dx, 0.0]
        conf = np.full(33, 0.9)
        if 30 <= t < 36:
            conf[MEDIAPIPE33_JOINT_NAMES.index("left_wrist")] = 0.2  # below min_confidence: filled
        if t in EMPTY:
            kp, conf = np.full((33, 2), np.nan), np.zeros(33)  # the detector found nobody
        frames.append(Frame2D("video", t, t / 30.0, "mediapipe33", WIDTH, HEIGHT, kp, conf))
    return frames


def live(model, frames):
    """The frames through ``serve --lossless`` over ZeroMQ, then the protocol's end message."""
    server = PoseServer(LiftEngine(model, max_streams=1), "tcp://127.0.0.1:*", "tcp://127.0.0.1:*",
                        lossless=True, status_interval_s=0)
    th = ServerThread(server)
    rx = PoseReceiver(server.publish_endpoint, lossless=True)
    tx = KeypointSender(server.input_endpoint, lossless=True)
    poses = {}
    try:
        for f in frames:
            tx.send(f.stream, f.frame, np.concatenate([f.kp, f.conf[:, None]], axis=1), width=f.width,
                    height=f.height, layout=f.layout, t=f.t)
        tx.end("video")
        t_end = time.monotonic() + 30
        while time.monotonic() < t_end:
            m = rx.recv(200)
            if m is None:
                continue
            if m["type"] == "pose3d":
                poses[m["frame"]] = m
            elif m["event"] == "end":
                break
    finally:
        th.stop()
        tx.close()
        rx.close()
    assert sorted(poses) == list(range(len(frames)))
    return (np.array([poses[t]["joints"] for t in range(T)]), np.array([poses[t]["valid"] for t in range(T)]),
            np.array([poses[t]["warmup"] for t in range(T)]))


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full-context"])
def test_video_path_equals_live_path(causal):
    model = random_model((3, 3), causal=causal, channels=32)
    frames = mediapipe_frames()
    joints, valid, warmup = live(model, frames)
    off = video_arrays(frames, LiftEngine(model, max_streams=1))
    np.testing.assert_array_equal(off["valid"], valid)
    np.testing.assert_array_equal(off["warmup"], warmup)
    np.testing.assert_allclose(off["joints_raw"], joints, atol=1e-6, rtol=0)  # the live server here runs no stage
    # the sequence exercises what differed before: nothing liftable, held frames, a reset
    assert not valid[:3].any() and not valid[21:25].any() and not valid[41:61].any()
    assert valid[3:21].all() and valid[25:41].all() and valid[61:].all()
    assert off["filled"][30, H36M_JOINT_NAMES.index("left_wrist")] and not off["filled"][29].any()
    assert np.isnan(off["keypoints2d"][0]).all() and np.isfinite(off["keypoints2d"][3]).all()
