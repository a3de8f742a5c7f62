"""Faults, each with its documented behaviour (docs/reliability.md):

* SIGTERM / SIGINT to ``serve``: clean stop, pending poses flushed, final counters sent
  on the status topic and printed, exit code 0.
* Non-loopback bind without ``--allow-remote``: refused with a clear one-line error.
* Sender restart (frame numbers jump back), duplicates and out-of-order frames: the
  stream resets (reason ``restart``); every accepted frame still gets exactly one pose,
  and after the reset the poses equal the offline model on the new segment.
* Long gaps: up to 15 missing frames are interpolated (``gap`` = n, no reset); longer
  gaps reset the stream (reason ``gap``) and it starts afresh.
* A consumer that stops reading: PUB keeps the server's memory bounded and drops for that
  consumer only; the consumer counts the drops from the per-stream ``seq`` numbers.
  Lossless: PUSH applies back-pressure, nothing accepted is lost.
* The publisher (``serve``) restarts while consumers stay connected: they reconnect by
  themselves and receive the new server's poses; ``seq`` starting again marks the restart.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import msgpack
import numpy as np
import pytest
import torch
import zmq

from poselift.model import lift_sequence, load_checkpoint
from poselift.model.normalization import normalize_screen
from poselift.stream.client import KeypointSender, PoseReceiver
from poselift.stream.engine import LiftEngine
from poselift.stream.protocol import encode_input
from poselift.stream.service import PoseServer
from poselift.stream.transport import is_loopback
from tests.helpers import random_model
from tests.reliability_helpers import ROOT, ServeProcess, drain, final_counters, pull, push, recv_all, rss_kib
from tests.stream_helpers import HEIGHT, WIDTH, ServerThread, project, synthetic_poses, write_checkpoint, offline

ANY = "tcp://127.0.0.1:*"


# ------------------------------------------------------------------------ signals
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_serve_cleanly_flushes_and_reports(tmp_path, sig):
    """A symmetric model holds its last (RF-1)/2 poses until the stream ends: the signal
    must flush them, send the final counters, print them, and exit 0."""
    ckpt = write_checkpoint(tmp_path / "full.pt", causal=False, widths=(3, 3), channels=16)
    model = load_checkpoint(ckpt).model
    N = 30
    kp = project(synthetic_poses(N, seed=4))
    serve = ServeProcess.start(ckpt, "--lossless", "--raw")
    rx = pull(serve.publish)
    tx = push(serve.input)
    try:
        for t in range(N):
            tx.send(encode_input("s", t, kp[t], width=WIDTH, height=HEIGHT, t=float(t)))
        latency = 4  # (RF 9 - 1) / 2 frames of look-ahead
        got = recv_all(rx, poses=N - latency, timeout=30)
        assert len(got["pose3d"]) == N - latency
        time.sleep(0.3)
        assert serve.proc.poll() is None
        code, out, err = serve.stop(sig, timeout=30)
        recv_all(rx, poses=N, timeout=10, out=got)
        t_end = time.monotonic() + 5
        while time.monotonic() < t_end and not any(m["event"] == "counters" and m["counters"]["published"] == N
                                                   for m in got["status"]):
            if rx.poll(200):
                got["status"].append(msgpack.unpackb(rx.recv_multipart()[-1], raw=False))
    finally:
        serve.kill()
        tx.close()
        rx.close()
    assert code == 0, err
    assert "Traceback" not in err
    assert f"stopped by {signal.Signals(sig).name}" in out
    counters = final_counters(out)
    assert counters["received"] == counters["accepted"] == counters["published"] == N
    assert counters["undelivered"] == 0
    poses = got["pose3d"]
    assert [p["frame"] for p in poses] == list(range(N))  # the flushed tail arrived
    np.testing.assert_allclose(np.array([p["joints"] for p in poses]), offline(model, kp), atol=1e-5, rtol=0)
    assert any(m["event"] == "counters" and m["counters"]["published"] == N for m in got["status"])


def test_sigterm_with_a_stalled_lossless_consumer_still_exits(tmp_path):
    """Lossless, the consumer never reads: the server is blocked on back-pressure. SIGTERM
    still ends it promptly and the poses it gave up on are reported as undelivered."""
    ckpt = write_checkpoint(tmp_path / "m.pt", causal=True, widths=(3,), channels=8)
    serve = ServeProcess.start(ckpt, "--lossless", "--raw")
    ctx = zmq.Context()
    rx = ctx.socket(zmq.PULL)
    rx.setsockopt(zmq.RCVHWM, 10)
    rx.setsockopt(zmq.RCVBUF, 4096)
    rx.connect(serve.publish)
    tx = push(serve.input, ctx)
    kp = project(synthetic_poses(1))[0]
    try:
        sent = 0
        t_end = time.monotonic() + 40
        while sent < 100_000 and time.monotonic() < t_end:  # until back-pressure reaches us
            try:
                tx.send(encode_input("s", sent, kp, width=WIDTH, height=HEIGHT, t=0.0), zmq.NOBLOCK)
                sent += 1
            except zmq.Again:  # blocked; but only when it stays blocked is the server stuck
                # (ZeroMQ wakes a writer at half the HWM). 6 s: a server that is only slow (a
                # loaded machine; it once read nothing for 3 s) must not pass for a stuck one.
                if tx.poll(6000, zmq.POLLOUT) == 0:
                    break
        t0 = time.monotonic()
        code, out, err = serve.stop(signal.SIGTERM, timeout=20)
        took = time.monotonic() - t0
    finally:
        serve.kill()
        tx.close(0)
        rx.close(0)
        ctx.term()
    assert code == 0, err
    counters = final_counters(out)
    assert counters["published"] + counters["undelivered"] == counters["accepted"] <= sent
    assert counters["undelivered"] >= 1, (sent, counters)
    assert sent < 100_000, "back-pressure never reached the sender"
    assert took < 15, took


# ---------------------------------------------------------------------- exposure
def test_loopback_detection():
    for addr in ("tcp://127.0.0.1:5555", "tcp://127.0.0.2:1", "tcp://localhost:5", "tcp://[::1]:5", "ipc:///tmp/x",
                 "inproc://a", "tcp://127.0.0.1:*"):
        assert is_loopback(addr), addr
    for addr in ("tcp://0.0.0.0:5555", "tcp://*:5555", "tcp://eth0:5555", "tcp://192.168.1.2:5", "tcp://[::]:5",
                 "tcp://example.com:5", "udp://127.0.0.1:5", "ws://127.0.0.1:5"):
        assert not is_loopback(addr), addr


def test_non_loopback_bind_is_refused_without_allow_remote():
    model = random_model((3,), causal=True, channels=8)
    for inp, pub in (("tcp://0.0.0.0:*", ANY), (ANY, "tcp://*:*")):
        with pytest.raises(ValueError, match="--allow-remote"):
            PoseServer(LiftEngine(model), inp, pub)
    # the refused sockets were closed: a loopback server still binds
    server = PoseServer(LiftEngine(model), ANY, ANY)
    server.close()


def test_serve_cli_refuses_remote_bind_in_one_line(tmp_path):
    ckpt = write_checkpoint(tmp_path / "m.pt", causal=True, widths=(3,), channels=8)
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "poselift", "serve", "--input", "tcp://0.0.0.0:*", "--checkpoint",
                           str(ckpt), "--device", "cpu", "--duration", "1"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "refusing to bind tcp://0.0.0.0:*" in proc.stderr and "--allow-remote" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    help_text = subprocess.run([sys.executable, "-m", "poselift", "serve", "--help"], capture_output=True,
                               text=True, env=env, timeout=60).stdout
    assert "--allow-remote" in help_text


# ------------------------------------------------------------- frame-number faults
def run_in_process(model, sends, kp, lossless=True):
    """Send (stream, frame) pairs with the keypoints ``kp[frame]`` through an in-process
    lossless server; return (poses, status messages, final counters)."""
    server = PoseServer(LiftEngine(model, max_streams=4), ANY, ANY, lossless=lossless, status_interval_s=0)
    th = ServerThread(server)
    rx = pull(server.publish_endpoint)
    tx = push(server.input_endpoint)
    try:
        for stream, frame in sends:
            tx.send(encode_input(stream, frame, kp[frame], width=WIDTH, height=HEIGHT, t=float(frame)))
        got = recv_all(rx, poses=len(sends), timeout=30)
        drain(rx, got, 0.5)
    finally:
        counters = th.stop()
        tx.close()
        rx.close()
    return got["pose3d"], got["status"], counters


def test_sender_restart_duplicates_and_out_of_order_frames():
    """Every non-increasing frame number (restart, duplicate, late frame) resets the stream
    (reason ``restart``); each accepted frame still gives exactly one pose, in order, and
    after a restart the poses equal the offline model on the new segment."""
    model = random_model((3, 3), causal=True, channels=16, seed=5)
    kp = project(synthetic_poses(60, seed=5))
    frames = list(range(0, 25)) + [24] + [25, 26] + [30, 28, 29] + list(range(0, 20))
    #         normal           duplicate  continue  out of order     sender restarted
    poses, status, counters = run_in_process(model, [("s", f) for f in frames], kp)
    assert [p["frame"] for p in poses] == frames
    resets = [m["reason"] for m in status if m["event"] == "reset"]
    assert resets == ["restart"] * 3 and counters["resets"] == 3
    assert counters["published"] == counters["accepted"] == len(frames)
    last = poses[-20:]  # the restarted sequence starts afresh: warm-up again, offline values
    assert last[0]["warmup"] and not last[-1]["warmup"]
    np.testing.assert_allclose(np.array([p["joints"] for p in last]), offline(model, kp[:20]), atol=1e-5, rtol=0)
    assert poses[25]["warmup"]  # the duplicate began a new segment
    assert poses[28]["gap"] == 3  # 27, 28, 29 missing before 30: interpolated


def test_short_gaps_are_interpolated_long_gaps_reset():
    model = random_model((3, 3), causal=True, channels=16, seed=6)
    kp = project(synthetic_poses(80, seed=6))
    frames = list(range(0, 20)) + list(range(35, 41)) + list(range(57, 70))
    #                               gap of 15: filled  gap of 16: reset
    poses, status, counters = run_in_process(model, [("s", f) for f in frames], kp)
    assert [p["frame"] for p in poses] == frames
    by = {p["frame"]: p for p in poses}
    assert by[35]["gap"] == 15 and by[36]["gap"] == 0 and by[57]["gap"] == 0
    assert [(m["stream"], m["reason"]) for m in status if m["event"] == "reset"] == [("s", "gap")]
    # up to frame 40: the offline model on the sequence with frames 20..34 interpolated
    x = normalize_screen(kp[:41], WIDTH, HEIGHT).astype(np.float32)
    w = (np.arange(1, 16, dtype=np.float32) / 16)[:, None, None]
    x[20:35] = x[19][None] * (1 - w) + x[35][None] * w
    ref = lift_sequence(model, torch.from_numpy(x)[None])[0].numpy()
    got = np.array([by[f]["joints"] for f in frames[:26]])
    np.testing.assert_allclose(got, ref[frames[:26]], atol=1e-4, rtol=0)
    # after the reset: a fresh stream
    np.testing.assert_allclose(np.array([by[f]["joints"] for f in range(57, 70)]), offline(model, kp[57:70]),
                               atol=1e-5, rtol=0)
    assert by[57]["warmup"]


# ------------------------------------------------------------- stalled consumers
def test_lossless_backpressure_loses_nothing():
    """The consumer stops reading: the server's PUSH queue fills, the server stops reading,
    the sender's PUSH blocks (and stays blocked). When the consumer resumes, every accepted
    frame arrives exactly once, in order, equal to the offline model."""
    model = random_model((3, 3), causal=True, channels=16, seed=7)
    cycle = project(synthetic_poses(600, seed=7))
    MAX = 100_000
    server = PoseServer(LiftEngine(model, max_streams=2), ANY, ANY, lossless=True, status_interval_s=0)
    th = ServerThread(server)
    ctx = zmq.Context()
    rx = ctx.socket(zmq.PULL)
    rx.setsockopt(zmq.RCVHWM, 100)
    rx.setsockopt(zmq.LINGER, 0)
    rx.connect(server.publish_endpoint)
    tx = push(server.input_endpoint, ctx, hwm=100)

    def frame(t):
        return encode_input("s", t, cycle[t % len(cycle)], width=WIDTH, height=HEIGHT, t=float(t))

    held = None
    got = {"pose3d": [], "status": []}
    try:
        sent = 0
        t_end = time.monotonic() + 60
        while sent < MAX and time.monotonic() < t_end:  # the consumer is not reading
            try:
                tx.send(frame(sent), zmq.NOBLOCK)
                sent += 1
            except zmq.Again:  # blocked; it must stay blocked (ZeroMQ wakes a writer at half its HWM)
                if tx.poll(1500, zmq.POLLOUT) == 0:
                    held = sent
                    break
        assert held is not None, f"back-pressure never reached the sender ({sent} sent)"
        N = held + 2000
        reader = threading.Thread(target=recv_all, args=(rx,), kwargs=dict(poses=N, timeout=120, out=got))
        reader.start()  # the consumer resumes
        tx.setsockopt(zmq.SNDTIMEO, 20_000)
        while sent < N:
            tx.send(frame(sent))
            sent += 1
        reader.join(120)
    finally:
        counters = th.stop()
        tx.close(0)
        rx.close(0)
        ctx.term()
    poses = got["pose3d"]
    assert len(poses) == N
    assert [p["frame"] for p in poses] == list(range(N))
    assert counters["accepted"] == counters["published"] == N and counters["undelivered"] == 0
    kp = np.stack([cycle[t % len(cycle)] for t in range(N)])
    np.testing.assert_allclose(np.array([p["joints"] for p in poses]), offline(model, kp), atol=1e-4, rtol=0)
    print(f"\nlossless back-pressure: sender blocked after {held} frames; {N} sent, {len(poses)} received in order")


def _wait_joined(tx, rx, stream="warm", timeout=20.0):
    """PUB/SUB slow joiner: send frames until the consumer sees a pose."""
    kp = project(synthetic_poses(1))[0]
    t_end = time.monotonic() + timeout
    f = 0
    while time.monotonic() < t_end:
        tx.send(stream, f, kp, width=WIDTH, height=HEIGHT)
        f += 1
        msg = rx.recv(100)
        if msg is not None and msg["type"] == "pose3d":
            return f
    raise AssertionError("consumer never joined")


def test_pub_consumer_that_stops_reading_memory_bounded_drops_counted(tmp_path):
    """Live mode, a subscriber stops reading while 40,000 poses are published: the
    server's RSS stays flat (PUB queues at most SNDHWM per subscriber, then drops for that
    subscriber), and each consumer counts exactly what it missed from ``seq``.

    Only what PUB guarantees is asserted: PUB may drop for *any* subscriber that falls
    behind, so a second consumer that keeps reading may also miss a few poses on a loaded
    machine (it once lost frames 39,998 and 39,999); it is not required to get everything,
    only to count what it missed and to lose less than the stalled one (queues are per
    subscriber). The server publishes every pose it accepts (its counters)."""
    ckpt = write_checkpoint(tmp_path / "m.pt", causal=True, widths=(3,), channels=8)
    serve = ServeProcess.start(ckpt, "--raw")
    ctx = zmq.Context()
    rx = PoseReceiver(serve.publish, status=False, context=ctx)
    rx.sock.disconnect(serve.publish)  # a small queue on the consumer side (applies to new connections;
    rx.sock.setsockopt(zmq.RCVHWM, 100)  # a small SO_RCVBUF as well made libzmq stall the SUB for good)
    rx.sock.connect(serve.publish)
    tx = KeypointSender(serve.input, context=ctx)
    probe = PoseReceiver(serve.publish, status=False, context=ctx)  # a second consumer that keeps reading
    kp = project(synthetic_poses(1))[0]
    N = 80_000  # more than the queues between server and a stalled consumer hold (up to ~28,000, once all of 40,000)
    probe_frames: list[int] = []
    probe_msgs: list[dict] = []
    probe_stop = threading.Event()

    def read_probe():
        while not probe_stop.is_set():
            m = probe.recv(100)
            if m is not None and m["stream"] == "cam0":
                probe_frames.append(m["frame"])
                probe_msgs.append(m)

    probe_thread = threading.Thread(target=read_probe, daemon=True)
    try:
        _wait_joined(tx, rx)
        _wait_joined(tx, probe, stream="warm_probe")
        probe_thread.start()
        for f in range(5000):  # warm-up with a reading consumer (allocator, caches, queues)
            tx.send("warm", 10_000 + f, kp, width=WIDTH, height=HEIGHT)
            while rx.recv(0) is not None:
                pass
            if f % 200 == 199:
                time.sleep(0.03)
        time.sleep(0.5)
        while rx.recv(200) is not None:
            pass
        rss0 = rss_kib(serve.pid)
        rss_half = rss0
        for f in range(N):  # the consumer does not read; paced so that the server keeps up
            tx.send("cam0", f, kp, width=WIDTH, height=HEIGHT)
            if f % 200 == 199:
                time.sleep(0.03)
            if f == N // 2:
                rss_half = rss_kib(serve.pid)
        # until the server has published them all: the probe saw the last frame, or (PUB may
        # drop the last ones for the probe too) saw nothing new for 5 s
        t_end = time.monotonic() + 120
        seen, t_quiet = -1, time.monotonic()
        while (not probe_frames or probe_frames[-1] < N - 1) and time.monotonic() < t_end:
            if len(probe_frames) != seen:
                seen, t_quiet = len(probe_frames), time.monotonic()
            elif time.monotonic() - t_quiet > 5.0:
                break
            time.sleep(0.1)
        rss1 = rss_kib(serve.pid)
        received = []
        tail_sent = False
        t_end = time.monotonic() + 60
        while time.monotonic() < t_end:  # the consumer resumes, until the tail frames arrive
            m = rx.recv(500)
            if m is None:
                if not tail_sent:  # a few more, so drops at the end of the stall show in seq
                    for f in range(N, N + 3):
                        tx.send("cam0", f, kp, width=WIDTH, height=HEIGHT)
                    tail_sent = True
                continue
            received.append(m)
            if m["stream"] == "cam0" and m["frame"] == N + 2:
                break
        code, out, err = serve.stop()
    finally:
        probe_stop.set()
        if probe_thread.is_alive():
            probe_thread.join(5)
        serve.kill()
        tx.close()
        rx.close()
        probe.close()
        ctx.term()
    assert code == 0, err
    counters = final_counters(out)
    assert counters["accepted"] == counters["published"]  # the server published every pose it accepted
    cam = [m for m in received if m["stream"] == "cam0"]
    assert cam and cam[-1]["frame"] == N + 2, (len(received), len(cam), cam[-1]["frame"] if cam else None, counters,
                                               rss0, rss1)
    published_cam = cam[-1]["seq"] + 1
    assert published_cam <= counters["published"]  # (the rest are the warm-up stream's)
    # every pose either received or counted as dropped, by each consumer, per stream
    # (poses dropped before a consumer's first one are unknown to it: counted from its first seq)
    assert len(cam) + rx.dropped_by_stream["cam0"] == published_cam - cam[0]["seq"]
    assert probe_msgs and probe_msgs[-1]["seq"] < published_cam
    assert len(probe_msgs) + probe.dropped_by_stream["cam0"] == probe_msgs[-1]["seq"] + 1 - probe_msgs[0]["seq"]
    assert [m["seq"] for m in probe_msgs] == sorted({m["seq"] for m in probe_msgs})  # in order, no duplicates
    # drops are per subscriber: the consumer that kept reading lost (far) less than the stalled one
    assert probe.dropped_by_stream["cam0"] < rx.dropped_by_stream["cam0"], (probe.dropped_by_stream, rx.dropped_by_stream)
    # the stall dropped: more than the queues in between hold (HWMs and the kernel's socket
    # buffers, which loopback autotunes: 10,000 to 28,000 poses were still delivered in our runs)
    assert rx.dropped_by_stream["cam0"] > 0, (len(cam), rx.dropped, counters)
    growth_mib, second_half_mib = (rss1 - rss0) / 1024, (rss1 - rss_half) / 1024
    print(f"\nstalled PUB consumer: {N} published, {len(cam)} received, {rx.dropped_by_stream['cam0']} counted dropped "
          f"(reading probe: {probe.dropped_by_stream['cam0']}); "
          f"serve RSS after warm-up {rss0 / 1024:.1f} -> {rss_half / 1024:.1f} (half way) -> {rss1 / 1024:.1f} MiB")
    # That the queues are bounded is shown by the drops above (with no high-water mark the
    # stalled consumer drops nothing). Memory is a leak check: the second 40,000 stalled poses
    # must not add memory in proportion (a leak of 0.6 KiB per pose would add 24 MiB; measured
    # -1 to +1 MiB; a queue without a bound added 13.5). The absolute growth varies with the
    # machine's load (the input queue's peak, allocator arenas: -1 to +42 MiB seen), so it gets
    # only a loose bound.
    assert second_half_mib < 24, (second_half_mib, growth_mib)
    assert growth_mib < 64, growth_mib


def test_publisher_restart_consumers_stay_up(tmp_path):
    """``serve`` is stopped and started again on the same addresses; the consumer and the
    sender keep their sockets (ZeroMQ reconnects by itself) and get the new server's poses;
    the consumer sees ``seq`` start again (a publisher restart, not drops)."""
    import socket

    ckpt = write_checkpoint(tmp_path / "m.pt", causal=True, widths=(3,), channels=8)
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    pin, pout = (f"tcp://127.0.0.1:{p}" for p in ports)
    ctx = zmq.Context()
    rx = PoseReceiver(pout, status=False, context=ctx)
    tx = KeypointSender(pin, context=ctx)
    seen = []
    try:
        for run in range(2):
            serve = ServeProcess.start(ckpt, "--input", pin, "--publish", pout, "--raw")
            try:
                _wait_joined(tx, rx, stream=f"warm{run}")
                kp = project(synthetic_poses(20, seed=run))
                for f in range(20):
                    tx.send("cam0", f, kp[f], width=WIDTH, height=HEIGHT)
                t_end = time.monotonic() + 10
                mine = []
                while len(mine) < 20 and time.monotonic() < t_end:
                    m = rx.recv(200)
                    if m is not None and m["stream"] == "cam0":
                        mine.append(m)
                seen.append(mine)
                code, out, err = serve.stop()
                assert code == 0, err
            finally:
                serve.kill()
    finally:
        tx.close()
        rx.close()
        ctx.term()
    assert [len(s) for s in seen] == [20, 20]
    assert [m["seq"] for m in seen[1]] == list(range(20))  # a new publisher: seq from 0
    assert rx.publisher_restarts >= 1


# ------------------------------------------------------------------------- CURVE
def test_curve_encryption_and_client_allow_list(tmp_path):
    """serve --curve-secret-key --curve-clients: an allowed sender and consumer exchange
    poses (equal to the offline model); a consumer or sender without the keys, or with a
    key not on the list, gets nothing through and sends nothing in."""
    from poselift.stream.transport import generate_keys

    assert zmq.has("curve")
    _, server_secret = generate_keys(str(tmp_path / "server"), "server")
    server_public = str(tmp_path / "server" / "server.key")
    _, ok_secret = generate_keys(str(tmp_path / "clients"), "robot")
    _, bad_secret = generate_keys(str(tmp_path / "others"), "intruder")
    model = random_model((3, 3), causal=True, channels=16, seed=8)
    N = 20
    kp = project(synthetic_poses(N, seed=8))
    server_ctx, client_ctx = zmq.Context(), zmq.Context()
    server = PoseServer(LiftEngine(model, max_streams=4), ANY, ANY, lossless=True, status_interval_s=0,
                        context=server_ctx, curve_secret_key=server_secret, curve_clients=str(tmp_path / "clients"))
    th = ServerThread(server)
    plain_rx = PoseReceiver(server.publish_endpoint, lossless=True, context=client_ctx)
    bad_rx = PoseReceiver(server.publish_endpoint, lossless=True, context=client_ctx,
                          curve_server_key=server_public, curve_secret_key=bad_secret)
    bad_tx = KeypointSender(server.input_endpoint, lossless=True, context=client_ctx,
                            curve_server_key=server_public, curve_secret_key=bad_secret)
    plain_tx = KeypointSender(server.input_endpoint, lossless=True, context=client_ctx)
    time.sleep(0.5)  # the refused peers have tried their handshakes
    rx = PoseReceiver(server.publish_endpoint, lossless=True, context=client_ctx,
                      curve_server_key=server_public, curve_secret_key=ok_secret)
    tx = KeypointSender(server.input_endpoint, lossless=True, context=client_ctx,
                        curve_server_key=server_public, curve_secret_key=ok_secret)
    try:
        for t in range(N):
            for sender, stream in ((bad_tx, "intruder"), (plain_tx, "plain")):
                try:
                    sender.sock.send(encode_input(stream, t, kp[t], width=WIDTH, height=HEIGHT), zmq.NOBLOCK)
                except zmq.Again:
                    pass
            tx.send("cam0", t, kp[t], width=WIDTH, height=HEIGHT)
        poses = []
        t_end = time.monotonic() + 20
        while len(poses) < N and time.monotonic() < t_end:
            m = rx.recv(200)
            if m is not None and m["type"] == "pose3d":
                poses.append(m)
        time.sleep(0.3)
        leaked = [m for r in (plain_rx, bad_rx) for m in iter(lambda r=r: r.recv(50), None)]
    finally:
        counters = th.stop()
        for s in (rx, tx, plain_rx, bad_rx, bad_tx, plain_tx):
            s.sock.close(0)
        client_ctx.term()
        server_ctx.term()
    assert [p["frame"] for p in poses] == list(range(N)) and {p["stream"] for p in poses} == {"cam0"}
    np.testing.assert_allclose(np.array([p["joints"] for p in poses]), offline(model, kp), atol=1e-5, rtol=0)
    assert leaked == []
    assert counters["received"] == N  # nothing from the refused senders reached the server


def test_keygen_cli_and_bad_key_file(tmp_path):
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "poselift", "keygen", str(tmp_path / "k"), "--name", "srv"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "k" / "srv.key").exists() and (tmp_path / "k" / "srv.key_secret").stat().st_mode & 0o077 == 0
    ckpt = write_checkpoint(tmp_path / "m.pt", causal=True, widths=(3,), channels=8)
    for key in (tmp_path / "k" / "srv.key", tmp_path / "m.pt"):  # a public key only; not a key file
        r = subprocess.run([sys.executable, "-m", "poselift", "serve", "--input", ANY, "--publish", ANY,
                            "--checkpoint", str(ckpt), "--device", "cpu", "--duration", "1",
                            "--curve-secret-key", str(key)], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 2 and "Traceback" not in r.stderr and str(key) in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
