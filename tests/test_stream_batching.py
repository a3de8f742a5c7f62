"""serve's batching policy (docs/protocol.md, Batching): a drain reads at most ``max_drain``
messages, a lone frame is lifted and published in the call that reads it, and a drain of
many streams' frames is lifted in rounds of one batched step, each stream's poses in frame
order and, lossless, exactly one per frame."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from poselift.stream.engine import LiftEngine
from poselift.stream.protocol import decode_message, encode_input
from poselift.stream.service import PoseServer
from tests.helpers import random_model
from tests.stream_helpers import HEIGHT, WIDTH, project, synthetic_poses

ANY = "tcp://127.0.0.1:*"


@pytest.fixture
def rig():
    engine = LiftEngine(random_model((3, 3), causal=True, channels=16), max_streams=8)
    server = PoseServer(engine, ANY, ANY, lossless=True, status_interval_s=0, max_drain=5)
    ctx = zmq.Context.instance()
    tx = ctx.socket(zmq.PUSH)
    tx.connect(server.input_endpoint)
    rx = ctx.socket(zmq.PULL)
    rx.connect(server.publish_endpoint)
    yield server, tx, rx
    tx.close(0)
    rx.close(0)
    server.close()


def wait_queued(server: PoseServer, n: int) -> None:
    """Give ZeroMQ's I/O thread time to move n messages into the server's queue."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and server.inp.get(zmq.EVENTS) & zmq.POLLIN == 0:
        time.sleep(0.01)
    time.sleep(0.2 + n * 0.002)


def receive(rx, n: int) -> list[dict]:
    out = []
    while len(out) < n and rx.poll(5000):
        out.append(decode_message(rx.recv_multipart()[-1]))
    return out


def test_max_drain_bounds_what_one_poll_reads(rig):
    server, tx, rx = rig
    kp = project(synthetic_poses(12))
    for t in range(12):
        tx.send(encode_input("a", t, kp[t], width=WIDTH, height=HEIGHT, t=t / 30))
    wait_queued(server, 12)
    reads = []
    while sum(reads) < 12:
        reads.append(server.poll_once(1000))
    assert max(reads) <= 5 and reads[0] == 5
    assert [m["frame"] for m in receive(rx, 12)] == list(range(12))


def test_a_lone_frame_is_published_by_the_poll_that_reads_it(rig):
    server, tx, rx = rig
    kp = project(synthetic_poses(3))
    for t in range(3):
        tx.send(encode_input("solo", t, kp[t], width=WIDTH, height=HEIGHT, t=t / 30))
        assert server.poll_once(2000) == 1
        assert rx.poll(0) or rx.poll(100)  # already sent: no waiting for a batch to fill
        assert decode_message(rx.recv_multipart()[-1])["frame"] == t


def test_a_drain_of_many_streams_is_stepped_in_rounds(rig):
    server, tx, rx = rig
    server.max_drain = 512
    kp = project(synthetic_poses(4))
    for t in range(4):
        for s in range(6):
            tx.send(encode_input(f"s{s}", t, kp[t], width=WIDTH, height=HEIGHT, t=t / 30))
    wait_queued(server, 24)
    batches = server.engine.counters["batches"]
    reads = []
    while sum(reads) < 24:
        reads.append(server.poll_once(1000))
    got = receive(rx, 24)
    assert len(got) == 24
    for s in range(6):
        assert [m["frame"] for m in got if m["stream"] == f"s{s}"] == [0, 1, 2, 3]
    steps = server.engine.counters["batches"] - batches
    assert steps < 24  # batched across streams, whatever the split into drains
    if reads == [24]:  # one drain: 4 frames of each of 6 streams are 4 rounds of 6
        assert steps == 4


def test_max_drain_must_be_positive():
    engine = LiftEngine(random_model((3,), causal=True, channels=8), max_streams=1)
    with pytest.raises(ValueError):
        PoseServer(engine, ANY, ANY, max_drain=0)


def test_poses_sent_after_a_wait_carry_the_wait(rig):
    """When a lossless send has to wait for the consumer, the poses after it are encoded
    again: their latency includes the wait, and seq still counts 0, 1, 2, ... per stream."""
    from poselift.stream.engine import PoseOut

    server, tx, rx = rig
    pub = server.publisher
    t0 = time.perf_counter()
    poses = [PoseOut("w", k, k / 30, t0, np.zeros((17, 3), np.float32), True, False, [], 0) for k in range(3)]
    real = pub._send
    calls = []

    def slow_first(topic, payload, block=True):
        calls.append(payload)
        if len(calls) == 1:
            pub._waited = True  # as if the consumer made it wait
            time.sleep(0.05)
        return real(topic, payload, block=block)

    pub._send = slow_first
    latencies = pub.send_poses(poses)
    assert len(calls) == 3 and latencies[1] >= latencies[0] + 40
    got = receive(rx, 3)
    assert [m["seq"] for m in got] == [0, 1, 2] and [m["frame"] for m in got] == [0, 1, 2]
    assert got[1]["latency_ms"] >= got[0]["latency_ms"] + 40
