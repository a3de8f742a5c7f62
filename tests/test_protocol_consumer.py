"""A consumer written from docs/protocol.md alone, against a real ``poselift serve`` process.

It decodes msgpack by hand (no poselift decoder), reads the ``skeleton`` status message and
rebuilds every pose's joints by forward kinematics from ``rotations``, ``root`` and the
skeleton's ``offsets``, with the quaternion convention and the rig frame as the document
states them (the worked example of "Motion: skeleton and rotations", copied here). Nothing
from poselift.model.rig is used on the consumer side.
"""

from __future__ import annotations

import time

import msgpack
import numpy as np
import zmq

from poselift.model.commands import default_checkpoint
from poselift.stream.client import KeypointSender
from poselift.stream.sources import DEMO_CLIP, load_clip
from tests.reliability_helpers import ServeProcess


# ---- from docs/protocol.md, "Worked example" ------------------------------------------------
def matrix(q):
    x, y, z, w = q
    return np.array([[1 - 2*(y*y + z*z), 2*(x*y - z*w),     2*(x*z + y*w)],
                     [2*(x*y + z*w),     1 - 2*(x*x + z*z), 2*(y*z - x*w)],
                     [2*(x*z - y*w),     2*(y*z + x*w),     1 - 2*(x*x + y*y)]])


def rig(p):
    return np.asarray(p) * [1, -1, -1]


def joints_from(pose, skeleton):
    parents, offsets = skeleton["parents"], np.asarray(skeleton["offsets"])
    root = np.zeros(3) if pose["root"] is None else np.asarray(pose["root"])
    G, P = {}, {}

    def place(j):
        if j in P:
            return
        R = matrix(pose["rotations"][j])
        if parents[j] < 0:
            G[j], P[j] = R, rig(np.asarray(pose["joints"][0]) + root)
        else:
            place(parents[j])
            G[j] = G[parents[j]] @ R
            P[j] = P[parents[j]] + G[parents[j]] @ offsets[j]
    for j in range(len(parents)):
        place(j)
    return np.array([rig(P[j]) - root for j in range(17)])
# -------------------------------------------------------------------------------------------


def _pull(addr: str) -> zmq.Socket:
    """The consumer the document describes for ``--lossless``: a PULL socket connected to the
    publish address."""
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(addr)
    return sock


def test_a_consumer_from_the_document_rebuilds_the_joints():
    clip = load_clip(DEMO_CLIP)
    n = 70
    serve = ServeProcess.start(default_checkpoint("causal"), "--lossless")
    sock = _pull(serve.publish)
    try:
        tx = KeypointSender(serve.input, lossless=True, linger_ms=30_000)
        for f in clip.frames("cam0", limit=n):
            tx.send("cam0", f.frame, f.kp, width=f.width, height=f.height, t=f.t)
        tx.end("cam0")
        messages = []
        t_end = time.monotonic() + 60
        while time.monotonic() < t_end:
            if not sock.poll(200):
                continue
            topic, payload = sock.recv_multipart()
            msg = msgpack.unpackb(payload)
            messages.append((topic.decode(), msg))
            if msg["type"] == "status" and msg["event"] == "end":
                break
    finally:
        tx.close()
        sock.close()
        serve.stop()
    assert all(m["v"] == 1 for _, m in messages)
    skeletons = [m for t, m in messages if t == "status" and m["event"] == "skeleton"]
    assert len(skeletons) >= 1 and skeletons[0]["reason"] == "settled" and skeletons[0]["stream"] == "cam0"
    sk = skeletons[0]["skeleton"]
    assert len(sk["names"]) == len(sk["parents"]) == len(sk["offsets"]) == 19 and sk["names"][0] == "Hips"
    poses = [m for t, m in messages if t == "pose3d.cam0"]
    assert [p["frame"] for p in poses] == list(range(n))
    # the skeleton message comes before the first pose that uses it
    order = [m.get("frame") if m["type"] == "pose3d" else "skeleton" for _, m in messages if m["type"] == "pose3d"
             or m["event"] == "skeleton"]
    assert order.index("skeleton") == sk["frame"]
    checked = 0
    for p in poses:
        if p["frame"] < sk["frame"] or not p["valid"]:
            continue
        assert len(p["rotations"]) == 19
        current = [s for s in skeletons if s["skeleton"]["frame"] <= p["frame"]][-1]["skeleton"]
        np.testing.assert_allclose(joints_from(p, current), np.asarray(p["joints"]), atol=1e-5)
        checked += 1
    assert checked >= n - 35


def test_a_consumer_from_the_document_reads_sharded_status():
    """docs/protocol.md, Sharded mode: with ``serve --workers N`` every status message's
    ``counters`` carry ``worker`` (0 ... N-1) and ``workers`` (N), the counts are that
    worker's, and the server's totals are the sums over each worker's latest counters."""
    clip = load_clip(DEMO_CLIP)
    streams, n = [f"cam{i}" for i in range(6)], 20
    serve = ServeProcess.start(default_checkpoint("causal"), "--lossless", "--workers", "2", timeout=180)
    sock = _pull(serve.publish)
    try:
        tx = KeypointSender(serve.input, lossless=True, linger_ms=30_000)
        for f in clip.frames("x", limit=n):
            for s in streams:
                tx.send(s, f.frame, f.kp, width=f.width, height=f.height, t=f.t)
        for s in streams:
            tx.end(s)
        poses, latest, ends = 0, {}, set()
        t_end = time.monotonic() + 90
        while time.monotonic() < t_end and len(ends) < len(streams):
            if not sock.poll(200):
                continue
            msg = msgpack.unpackb(sock.recv_multipart()[-1])
            if msg["type"] == "pose3d":
                poses += 1
                continue
            c = msg["counters"]
            assert c["workers"] == 2 and 0 <= c["worker"] < c["workers"]
            latest[c["worker"]] = c
            if msg["event"] == "end":
                ends.add(msg["stream"])
    finally:
        tx.close()
        serve.stop()  # while the consumer is still connected: the final status messages need not wait
        sock.close()
    assert poses == n * len(streams) and ends == set(streams)
    # an `end` status follows the poses it flushed: each worker's latest counters hold all of its poses
    assert sum(c["published"] for c in latest.values()) == poses
    assert sum(c["accepted"] for c in latest.values()) == poses
