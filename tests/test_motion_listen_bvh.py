"""``poselift listen --bvh`` records a live stream of a real ``serve`` process; SIGTERM closes
the file cleanly (the ``Frames:`` count is filled in)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from poselift.model.commands import default_checkpoint
from poselift.model.rig import RIG_NAMES, camera_to_rig
from poselift.stream.bvh_record import BVHRecording, lengths_from_offsets
from poselift.stream.client import KeypointSender
from poselift.stream.sources import DEMO_CLIP, load_clip
from tests.reliability_helpers import ROOT, ServeProcess


def test_listen_records_a_live_stream_and_closes_on_sigterm(tmp_path):
    bvhio = pytest.importorskip("bvhio")
    clip = load_clip(DEMO_CLIP)
    n = 60
    serve = ServeProcess.start(default_checkpoint("causal"), "--lossless")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "PYTHONUNBUFFERED": "1"}
    out = tmp_path / "rec.bvh"
    listen = subprocess.Popen([sys.executable, "-m", "poselift", "listen", serve.publish, "--lossless", "--json",
                               "--bvh", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    messages = []
    try:
        tx = KeypointSender(serve.input, lossless=True, linger_ms=30_000)
        for f in clip.frames("cam0", limit=n):
            tx.send("cam0", f.frame, f.kp, width=f.width, height=f.height, t=f.t)
        t_end = time.monotonic() + 60
        while time.monotonic() < t_end and sum(m["type"] == "pose3d" for m in messages) < n:
            line = listen.stdout.readline()
            if line.startswith("{"):
                messages.append(json.loads(line))
        time.sleep(0.2)
        listen.send_signal(signal.SIGTERM)  # no `end`: the file is closed by the signal
        _, err = listen.communicate(timeout=30)
    finally:
        tx.close()
        serve.stop()
        if listen.poll() is None:
            listen.kill()
    assert listen.returncode == 0, err
    path = tmp_path / "rec-cam0.bvh"
    assert f"BVH: {path}" in err
    bvh = bvhio.readAsBvh(str(path))
    poses = [m for m in messages if m["type"] == "pose3d"]
    first = next(i for i, p in enumerate(poses) if p["valid"] and p["rotations"] is not None)
    assert len(bvh.Root.Keyframes) == n - first  # every frame from the first usable one
    assert bvh.FrameTime == pytest.approx(1 / clip.fps, rel=1e-6)  # the source's frame time
    skeleton = next(m for m in messages if m["type"] == "status" and m["event"] == "skeleton")["skeleton"]
    hierarchy = bvhio.readAsHierarchy(str(path))
    layout = [j for j, _, _ in hierarchy.layout()]
    index = [[j.Name for j in layout].index(name) for name in RIG_NAMES[:17]]
    worst = 0.0
    for k, p in enumerate(poses[first:]):
        if p["frame"] < skeleton["frame"]:
            continue
        hierarchy.loadPose(k)
        pos = np.array([list(j.PositionWorld) for j in layout])[index] / 100.0
        expected = camera_to_rig(np.asarray(p["joints"]) + (np.asarray(p["root"]) if p["root"] else 0.0))
        worst = max(worst, np.abs(pos - expected).max())
    assert worst < 1e-3  # the file's skeleton is the one the skeleton message announced


def _pose(frame: int, valid: bool = True, t: float | None = None) -> dict:
    joints = np.zeros((17, 3))
    joints[1:, 1] = -0.1 * np.arange(1, 17)
    return {"type": "pose3d", "stream": "a", "frame": frame, "t": frame / 25 if t is None else t, "valid": valid,
            "joints": joints.tolist(), "root": None, "rotations": [[0, 0, 0, 1]] * 19}


def test_recording_fills_dropped_frames_and_falls_back_to_the_pose_lengths(tmp_path):
    rec = BVHRecording(tmp_path / "x.bvh")
    for f in (0, 1, 2, 5, 6):  # frames 3 and 4 dropped: the file keeps the timing
        rec.message(_pose(f))
    rec.message({"type": "status", "event": "end", "stream": "a"})
    assert rec.written == [tmp_path / "x-a.bvh"]
    text = (tmp_path / "x-a.bvh").read_text()
    assert "Frames: 7 " in text and "Frame Time: 0.04000000" in text
    rec.message(_pose(0))  # the stream comes back: a second file, not an overwrite
    assert rec.close() == [tmp_path / "x-a.bvh", tmp_path / "x-a-2.bvh"]


def test_lengths_from_offsets_inverts_rest_offsets():
    from poselift.model.rig import rest_offsets

    lengths = np.linspace(0.1, 0.5, 16)
    np.testing.assert_allclose(lengths_from_offsets(rest_offsets(lengths)), lengths)
