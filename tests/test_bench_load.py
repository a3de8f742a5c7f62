"""The load-curve bench's pieces: a paced lossless run counts every pose and measures its
latency from the time stamped into each message (no performance claim is tested here)."""

from __future__ import annotations

import struct

import msgpack
import pytest

from poselift.bench import load


def test_messages_are_stamped_in_place():
    msgs = load.messages(2, frames=3)
    m = bytearray(msgs[1][2])
    load._patch_frame_and_t(m, 4_000_000_000, struct.Struct(">d"), 123.25)
    d = msgpack.unpackb(bytes(m))
    assert d["frame"] == 4_000_000_000 and d["t"] == 123.25 and d["stream"] == "s1"
    assert msgpack.unpackb(msgs[1][2])["kp"] == d["kp"]


@pytest.fixture(scope="module")
def server():
    s = load.ServeProcess(4)
    yield s
    s.close()


def test_a_lossless_run_counts_every_pose(server):
    msgs = load.messages(4, frames=20)
    for _ in range(2):  # a second run against the same server continues the frame numbers
        r = load.run_at_rate(server, 200.0, 4, 1.0, msgs, warmup_s=0.2)
        assert r["sent"] == 200 and r["received"] == 200 and r["lost"] == 0
        assert r["latency_samples"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert server.next_frame >= 2 * 50


def test_a_pose_left_over_from_an_earlier_run_is_not_counted(server):
    """A pose that waited in the server's PUSH queue (its consumer had gone) reaches the next
    run's receiver first; counting it made 'lost' -1 in a load curve (or hid a lost pose)."""
    import time

    import zmq

    stale = bytearray(load.messages(1, frames=1)[0][0])  # stream s0; the run's frames of s0 come later
    load._patch_frame_and_t(stale, server.next_frame, struct.Struct(">d"), time.perf_counter() - 60.0)
    server.next_frame += 1
    tx = zmq.Context.instance().socket(zmq.PUSH)
    tx.setsockopt(zmq.LINGER, 1000)
    tx.connect(server.input)
    tx.send(bytes(stale))
    tx.close()
    time.sleep(0.5)  # lifted and queued for the next consumer
    r = load.run_at_rate(server, 200.0, 4, 0.5, load.messages(4, frames=20), warmup_s=0.1)
    assert r["sent"] == 100 and r["received"] == 100 and r["lost"] == 0 and r["stale_ignored"] == 1
