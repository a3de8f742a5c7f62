"""``serve --workers N`` (stream/sharded.py): stream-sharded workers behind one pair of sockets.

The in-process tests share one lossless 2-worker server and one single-process reference
server (same small random checkpoint); the lifecycle tests run ``poselift serve --workers 2``
as a real process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from poselift.stream.apps import serve_parts
from poselift.stream.protocol import MAX_MESSAGE_BYTES, encode_end, encode_input
from poselift.stream.service import PoseServer
from poselift.stream.sharded import ShardedServer, merge_counters, owner, stream_id
from tests.reliability_helpers import LOOPBACK_ANY, fuzz_message, pull, push
from tests.stream_helpers import HEIGHT, WIDTH, ServerThread, project, synthetic_poses, write_checkpoint

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2


# ------------------------------------------------------------------------------ routing
def test_stream_id_reads_the_maps_own_stream_not_bytes_that_look_like_it():
    plain = encode_input("cam7", 3, np.zeros((17, 2)), width=WIDTH, height=HEIGHT)
    assert stream_id(plain) == "cam7"
    # "stream" inside other keys' values, a key that contains it, and a nested map with a stream key
    crafted = msgpack.packb({"note": "stream", "xstream": "decoy", "nested": {"stream": "decoy"},
                             "v": 1, "stream": "real", "kp": ["stream", "decoy"]})
    assert b"decoy" in crafted and stream_id(crafted) == "real"
    # a key given twice: the decoder keeps the last value, so routing does too
    twice = b"\x82" + msgpack.packb("stream") + msgpack.packb("first") + msgpack.packb("stream") + msgpack.packb("last")
    assert msgpack.unpackb(twice)["stream"] == "last" and stream_id(twice) == "last"
    for unreadable in (b"", b"\xff\x00garbage", msgpack.packb(["stream", "cam0"]), msgpack.packb({"v": 1}),
                       msgpack.packb({"stream": 5}), plain[:20], b"\x91" * 50_000 + b"\xc0",
                       b"\x81\xa6stream\xa3\xff\xfe\xfd"):  # not a map, no stream, not a str, truncated, deep, bad UTF-8
        assert stream_id(unreadable) is None
        assert owner(stream_id(unreadable), WORKERS) == 0


def test_owner_is_a_stable_hash_of_the_name():
    names = [f"cam{i}" for i in range(64)]
    assert [owner(n, 3) for n in names] == [zlib.crc32(n.encode()) % 3 for n in names]  # not Python's salted hash
    assert {owner(n, WORKERS) for n in names} == {0, 1}
    assert owner(None, 4) == 0


def test_merge_counters_adds_workers_up():
    a = {"received": 3, "published": 2, "rejected": {"bad_type": 1}, "rejected_total": 1, "worker": 0, "workers": 2}
    b = {"received": 4, "published": 4, "rejected": {"bad_type": 2, "not_a_map": 1}, "rejected_total": 3,
         "worker": 1, "workers": 2}
    m = merge_counters([a, b])
    assert m["received"] == 7 and m["published"] == 6 and m["rejected_total"] == 4
    assert m["rejected"] == {"bad_type": 3, "not_a_map": 1} and m["workers"] == 2 and m["per_worker"] == [a, b]
    none = merge_counters([], workers=2)  # a forced stop before any worker reported
    assert none["received"] == none["published"] == 0 and none["workers"] == 2 and none["per_worker"] == []


def test_options_that_count_or_drive_one_process_are_refused_with_workers():
    from poselift.errors import UserError
    from poselift.stream.sharded import run_sharded

    for kwargs, words in (({"max_frames": 5}, "--frames"), ({"options": {"vmc": "127.0.0.1:39539"}}, "--vmc")):
        with pytest.raises(UserError, match=words):
            run_sharded(2, input=LOOPBACK_ANY, publish=LOOPBACK_ANY, **{"options": {}, **kwargs})
    with pytest.raises(UserError, match="at least 1"):
        run_sharded(0, input=LOOPBACK_ANY, publish=LOOPBACK_ANY, options={})


# ---------------------------------------------------------------------- shared servers
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("sharded") / "m.pt")


def _options(checkpoint) -> dict:
    return dict(checkpoint=str(checkpoint), device="cpu", max_streams=32)


@pytest.fixture(scope="module")
def sharded(checkpoint):
    server = ShardedServer(WORKERS, LOOPBACK_ANY, LOOPBACK_ANY, lossless=True, status_interval_s=0,
                           options=_options(checkpoint))
    runner = ServerThread(server)
    yield server
    _stop_reading(server, runner)


def _stop_reading(server, runner: ServerThread) -> None:
    """Stop a server while a consumer takes what is left (absent, the tail waits its linger)."""
    rx = pull(server.publish_endpoint)
    server.stop()
    while runner.thread.is_alive():
        if rx.poll(100):
            rx.recv_multipart()
    rx.close()
    server.close()


@pytest.fixture(scope="module")
def single(checkpoint):
    parts = serve_parts(**_options(checkpoint))
    server = PoseServer(parts.engine, LOOPBACK_ANY, LOOPBACK_ANY, lossless=True, status_interval_s=0,
                        stages=parts.stages)
    runner = ServerThread(server)
    yield server
    _stop_reading(server, runner)


def _exchange(server, messages: list[bytes], *, until, timeout: float = 60.0, late_consumer: float = 0.0) -> list:
    """Send ``messages`` (lossless) and read until ``until(received)`` is true; returns the
    decoded messages in arrival order. The consumer connects first (so that no status
    message is skipped for want of one), or ``late_consumer`` seconds after the sending."""
    ctx = zmq.Context.instance()
    tx = push(server.input_endpoint, ctx, hwm=100_000)
    rx = None if late_consumer else pull(server.publish_endpoint, ctx)
    time.sleep(0.2)
    for m in messages:
        tx.send_multipart(m) if isinstance(m, list) else tx.send(m)
    if rx is None:
        time.sleep(late_consumer)
        rx = pull(server.publish_endpoint, ctx)
    got: list[dict] = []
    t_end = time.monotonic() + timeout
    try:
        while time.monotonic() < t_end and not until(got):
            if rx.poll(200):
                got.append(msgpack.unpackb(rx.recv_multipart()[-1], raw=False))
    finally:
        tx.close()
        rx.close()
    return got


def _clip_messages(streams: list[str], frames: int) -> list[bytes]:
    """Frames of every stream interleaved (frame-major), then an ``end`` for each."""
    kp = {s: project(synthetic_poses(frames, seed=i)) for i, s in enumerate(streams)}
    out = [encode_input(s, t, kp[s][t], width=WIDTH, height=HEIGHT, t=t / 30) for t in range(frames) for s in streams]
    return out + [encode_end(s) for s in streams]


def _ends(n: int):
    return lambda got: sum(m["type"] == "status" and m["event"] == "end" for m in got) >= n


def _poses_by_stream(got: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for m in got:
        if m["type"] == "pose3d":
            out.setdefault(m["stream"], []).append(m)
    return out


# --------------------------------------------------------------------------- behaviour
def test_many_streams_every_pose_in_order_and_equal_to_one_server(sharded, single):
    streams, frames = [f"order{i}" for i in range(24)], 40
    msgs = _clip_messages(streams, frames)
    got = _exchange(sharded, msgs, until=_ends(len(streams)))
    ref = _exchange(single, msgs, until=_ends(len(streams)))
    by_stream, ref_by_stream = _poses_by_stream(got), _poses_by_stream(ref)
    assert sorted(by_stream) == sorted(streams)
    for s in streams:
        assert [p["frame"] for p in by_stream[s]] == list(range(frames)), s
        assert [p["seq"] for p in by_stream[s]] == list(range(frames)), s
        np.testing.assert_allclose([p["joints"] for p in by_stream[s]], [p["joints"] for p in ref_by_stream[s]],
                                   atol=1e-5)
        assert [p["valid"] for p in by_stream[s]] == [p["valid"] for p in ref_by_stream[s]]
    # each stream's status comes from the worker that owns it, and says how many there are
    status = [m for m in got if m["type"] == "status" and m["stream"] in streams]
    assert {m["event"] for m in status} >= {"end", "skeleton"}
    for m in status:
        assert m["counters"]["worker"] == owner(m["stream"], WORKERS) and m["counters"]["workers"] == WORKERS
    assert {m["counters"]["worker"] for m in status} == set(range(WORKERS))  # both workers lifted some


def test_lossless_nothing_lost_when_the_consumer_comes_late(sharded):
    streams, frames = [f"late{i}" for i in range(8)], 60
    got = _exchange(sharded, _clip_messages(streams, frames), until=_ends(len(streams)), late_consumer=1.5)
    by_stream = _poses_by_stream(got)
    assert {s: [p["frame"] for p in by_stream.get(s, [])] for s in streams} == {s: list(range(frames)) for s in streams}


@pytest.mark.slow  # about 30 s here: some 30,000 queued frames are lifted before it ends
def test_lossless_backpressure_reaches_the_sender_and_nothing_is_lost(sharded):
    """No consumer: the workers' output fills, they stop reading, the front's queues fill, it
    stops reading, and the sender blocks after a bounded number of messages (every queue has
    a high-water mark). Then a consumer gets every pose."""
    streams = [f"bp{i}" for i in range(8)]
    one = _clip_messages(streams, 1)[:len(streams)]
    ctx = zmq.Context.instance()
    tx = push(sharded.input_endpoint, ctx, hwm=100)
    sent, frame, blocked_for = 0, 0, 0.0
    t_end = time.monotonic() + 60
    while time.monotonic() < t_end and blocked_for < 1.0:
        m = msgpack.unpackb(one[sent % len(streams)])
        m["frame"] = sent // len(streams)
        try:
            tx.send(msgpack.packb(m), zmq.NOBLOCK)
            sent, blocked_for = sent + 1, 0.0
        except zmq.Again:
            time.sleep(0.05)
            blocked_for += 0.05
    assert blocked_for >= 1.0, "the sender never blocked"
    assert sent < 200_000  # bounded: the sum of the high-water marks, not the input
    # The consumer comes first: until it reads, every queue stays full and even the ends
    # cannot get in (a blocking send of them here waited forever whenever the workers' output
    # had filled before the sender gave up). They go in as the queues drain.
    rx = pull(sharded.publish_endpoint, ctx)
    unsent_ends = [encode_end(s) for s in streams]
    poses = 0
    ends = 0
    t_end = time.monotonic() + 120
    try:
        while time.monotonic() < t_end and ends < len(streams):
            while unsent_ends:
                try:
                    tx.send(unsent_ends[0], zmq.NOBLOCK)
                except zmq.Again:
                    break
                unsent_ends.pop(0)
            if rx.poll(200):
                m = msgpack.unpackb(rx.recv_multipart()[-1], raw=False)
                poses += m["type"] == "pose3d"
                ends += m["type"] == "status" and m["event"] == "end" and m["stream"] in streams
    finally:
        tx.close()
        rx.close()
    assert not unsent_ends and ends == len(streams)
    assert poses == sent


def test_end_flushes_and_reports_from_the_owner(sharded):
    msgs = _clip_messages(["endA", "endB"], 5) + [encode_end("never-seen")]
    msgs[0] = [b"a leading frame", msgs[0]]  # multipart input: the last frame is the map, as for one server
    got = _exchange(sharded, msgs, until=_ends(3))
    ends = {m["stream"]: m for m in got if m["type"] == "status" and m["event"] == "end"}
    assert ends["endA"]["reason"] == ends["endB"]["reason"] == "ended"
    assert ends["never-seen"]["reason"] == "unknown_stream"
    assert all(m["counters"]["worker"] == owner(s, WORKERS) for s, m in ends.items())
    assert len([m for m in got if m["type"] == "pose3d"]) == 10


def test_a_crafted_message_is_lifted_by_its_real_streams_worker(sharded):
    real = "craft-real"
    decoy = next(f"craft-decoy{i}" for i in range(100) if owner(f"craft-decoy{i}", WORKERS) != owner(real, WORKERS))
    good = msgpack.unpackb(encode_input(real, 0, project(synthetic_poses(1))[0], width=WIDTH, height=HEIGHT, t=0.0))
    # the first bytes "stream" are followed by the decoy's name; then a nested map's "stream"
    crafted = msgpack.packb({"xstream": decoy, "note": "stream", "nested": {"stream": decoy}, **good})
    assert crafted.index(b"stream") < crafted.index(decoy.encode()) < crafted.index(real.encode())
    got = _exchange(sharded, [crafted, encode_end(real)], until=_ends(1))
    end = next(m for m in got if m["type"] == "status" and m["event"] == "end")
    # the frame reached the worker that the plain `end` reached: it holds the stream
    assert end["reason"] == "ended" and end["counters"]["worker"] == owner(real, WORKERS)
    assert [(m["stream"], m["frame"]) for m in got if m["type"] == "pose3d"] == [(real, 0)]


def test_malformed_messages_are_rejected_with_the_reasons_one_server_gives(sharded, single):
    rng = np.random.default_rng(16)
    # not over 64 KiB: libzmq drops those and disconnects the sender, which loses what follows
    msgs = [data for _, data in (fuzz_message(rng) for _ in range(300)) if len(data) <= MAX_MESSAGE_BYTES]
    # one `end` per worker last: when both are answered, each worker has read everything before it
    marks = [next(f"fuzz-done{i}" for i in range(100) if owner(f"fuzz-done{i}", WORKERS) == w) for w in range(WORKERS)]
    msgs += [encode_end(m) for m in marks]

    def reasons(server):
        got = _exchange(server, msgs, until=lambda g: {m["stream"] for m in g if m["type"] == "status"} >= set(marks))
        return Counter(m["reason"] for m in got if m["type"] == "status" and m["event"] == "rejected")

    expected = reasons(single)
    assert sum(expected.values()) > 100 and len(expected) >= 6
    assert reasons(sharded) == expected


def test_live_mode_routes_and_publishes(checkpoint):
    server = ShardedServer(WORKERS, LOOPBACK_ANY, LOOPBACK_ANY, lossless=False, status_interval_s=0,
                           options=_options(checkpoint))
    runner = ServerThread(server)
    ctx = zmq.Context.instance()
    rx = ctx.socket(zmq.SUB)
    rx.setsockopt(zmq.SUBSCRIBE, b"")
    rx.connect(server.publish_endpoint)
    tx = ctx.socket(zmq.PUB)
    tx.connect(server.input_endpoint)
    try:
        time.sleep(0.5)  # PUB/SUB: let both connections settle (slow joiner)
        streams = [f"live{i}" for i in range(6)]
        for m in _clip_messages(streams, 10):
            tx.send(m)
            time.sleep(0.001)
        got: list[dict] = []
        t_end = time.monotonic() + 30
        while time.monotonic() < t_end and not _ends(len(streams))(got):
            if rx.poll(200):
                got.append(msgpack.unpackb(rx.recv_multipart()[-1], raw=False))
    finally:
        tx.close()
        rx.close()
        counters = runner.stop()
    by_stream = _poses_by_stream(got)
    assert {s: [p["frame"] for p in by_stream.get(s, [])] for s in streams} == {s: list(range(10)) for s in streams}
    assert counters["workers"] == WORKERS and counters["published"] == 60


def test_curve_keys_and_the_client_list_hold_at_the_front(tmp_path, checkpoint):
    from poselift.stream.client import KeypointSender, PoseReceiver
    from poselift.stream.transport import generate_keys

    _, server_secret = generate_keys(str(tmp_path / "server"), "server")
    server_public = str(tmp_path / "server" / "server.key")
    _, ok_secret = generate_keys(str(tmp_path / "clients"), "robot")
    server = ShardedServer(WORKERS, LOOPBACK_ANY, LOOPBACK_ANY, lossless=True, status_interval_s=0,
                           options=_options(checkpoint), curve_secret_key=server_secret,
                           curve_clients=str(tmp_path / "clients"))
    runner = ServerThread(server)
    ctx = zmq.Context()
    keys = dict(lossless=True, context=ctx, curve_server_key=server_public, curve_secret_key=ok_secret)
    rx, tx = PoseReceiver(server.publish_endpoint, **keys), KeypointSender(server.input_endpoint, **keys)
    plain_tx = KeypointSender(server.input_endpoint, lossless=True, context=ctx)
    kp = project(synthetic_poses(10))
    poses = []
    try:
        for t in range(10):
            try:
                plain_tx.sock.send(encode_input("plain", t, kp[t], width=WIDTH, height=HEIGHT), zmq.NOBLOCK)
            except zmq.Again:
                pass
            for stream in ("c0", "c1", "c2"):
                tx.send(stream, t, kp[t], width=WIDTH, height=HEIGHT)
        t_end = time.monotonic() + 30
        while len(poses) < 30 and time.monotonic() < t_end:
            m = rx.recv(200)
            if m is not None and m["type"] == "pose3d":
                poses.append(m)
    finally:
        server.stop()
        runner.thread.join(30)
        for c in (rx, tx, plain_tx):
            c.sock.close(0)
        server.close()
        ctx.term()
    assert len(poses) == 30 and {p["stream"] for p in poses} == {"c0", "c1", "c2"}
    assert server.final and sum(c["received"] for c in server.final) == 30  # nothing from the plain sender


def test_the_load_bench_measures_the_sharded_server():
    """``poselift bench --load-curve --workers 2`` runs the front as ServeProcess runs one server."""
    from poselift.bench import load

    server = load.ServeProcess(4, workers=WORKERS)
    try:
        assert f"{WORKERS} workers" in server.label
        r = load.run_at_rate(server, 200.0, 4, 1.0, load.messages(4, frames=20), warmup_s=0.2)
    finally:
        server.close()
    assert r["sent"] == r["received"] == 200 and r["lost"] == 0 and r["latency_samples"] > 0
    assert not server.proc.is_alive()


# ------------------------------------------------------------------------ the process
def _serve(checkpoint, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "poselift", "serve", "--workers", str(WORKERS), "--input",
                             LOOPBACK_ANY, "--publish", LOOPBACK_ANY, "--checkpoint", str(checkpoint),
                             "--device", "cpu", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@contextmanager
def _serving(checkpoint, *args: str) -> Iterator[subprocess.Popen]:
    """:func:`_serve`, killed on the way out if the test left it running."""
    proc = _serve(checkpoint, *args)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()


def _started(proc: subprocess.Popen, timeout: float = 120.0) -> tuple[list[int], str, str]:
    """Read serve's start lines: the worker pids and the two endpoints."""
    pids, ends = [], {}
    t_end = time.monotonic() + timeout
    while len(ends) < 2:
        assert time.monotonic() < t_end and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else ""
        line = proc.stdout.readline()
        if m := re.match(r"workers: \d+ processes \(pids ([\d, ]+)\)", line):
            pids = [int(p) for p in m.group(1).split(", ")]
        if m := re.match(r"(input|output)\s+\w+ bound at (\S+)", line):
            ends[m.group(1)] = m.group(2)
    return pids, ends["input"], ends["output"]


def _gone(pid: int, within: float) -> bool:
    t_end = time.monotonic() + within
    while time.monotonic() < t_end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_sigterm_flushes_reports_and_leaves_no_worker(checkpoint):
    with _serving(checkpoint, "--lossless") as proc:
        pids, inp, out = _started(proc)
        assert len(pids) == WORKERS
        streams = [f"term{i}" for i in range(6)]
        ctx = zmq.Context.instance()
        tx, rx = push(inp, ctx), pull(out, ctx)
        for m in _clip_messages(streams, 20)[:-len(streams)]:  # no `end`: the stop must flush and report
            tx.send(m)
        got: list[dict] = []
        t_end = time.monotonic() + 60
        while time.monotonic() < t_end and sum(m["type"] == "pose3d" for m in got) < 120:
            if rx.poll(200):
                got.append(msgpack.unpackb(rx.recv_multipart()[-1], raw=False))
        proc.send_signal(signal.SIGTERM)
        # Read until the front has exited and its forwarded tail is drained: workers also send
        # periodic `counters` status (every second), so the last one of each worker is its final.
        t_end = time.monotonic() + 30
        while time.monotonic() < t_end and proc.poll() is None:
            if rx.poll(200):
                got.append(msgpack.unpackb(rx.recv_multipart()[-1], raw=False))
        while rx.poll(500):
            got.append(msgpack.unpackb(rx.recv_multipart()[-1], raw=False))
        out_text, err = proc.communicate(timeout=30)
        tx.close()
        rx.close()
    assert proc.returncode == 0, err
    assert sum(m["type"] == "pose3d" for m in got) == 120
    latest = {m["counters"]["worker"]: m["counters"] for m in got if m.get("event") == "counters"}
    assert sorted(latest) == list(range(WORKERS)) and sum(c["published"] for c in latest.values()) == 120
    assert "stopped by SIGTERM" in out_text and "received 120, published 120" in out_text
    assert all(_gone(pid, 5) for pid in pids)


def test_a_second_signal_stops_at_once_with_a_stalled_lossless_consumer(checkpoint):
    with _serving(checkpoint, "--lossless") as proc:
        pids, inp, out = _started(proc)
        ctx = zmq.Context.instance()
        rx = ctx.socket(zmq.PULL)  # connected, never reads: the workers' output backs up
        rx.setsockopt(zmq.RCVHWM, 1)
        rx.setsockopt(zmq.LINGER, 0)
        rx.connect(out)
        tx = push(inp, ctx)
        tx.setsockopt(zmq.LINGER, 0)
        msgs = _clip_messages([f"stall{i}" for i in range(8)], 1)[:8]
        t_end = time.monotonic() + 4
        frame = 0
        while time.monotonic() < t_end:
            for m in msgs:
                d = msgpack.unpackb(m)
                d["frame"] = frame
                try:
                    tx.send(msgpack.packb(d), zmq.NOBLOCK)
                except zmq.Again:
                    time.sleep(0.01)
            frame += 1
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out_text, err = proc.communicate(timeout=30)
        waited = time.monotonic() - t0
        tx.close()
        rx.close()
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM (forced: pending poses not flushed)" in out_text and "final counters:" in out_text
    assert waited < 5 and all(_gone(pid, 5) for pid in pids)


def test_a_dead_worker_stops_the_server_with_one_line(checkpoint):
    with _serving(checkpoint) as proc:  # live: a lossless tail would wait its linger for the absent consumer
        pids, _, _ = _started(proc)
        os.kill(pids[1], signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.search(rf"worker 1 \(pid {pids[1]}\) exited with code -9", lines[0]), err
    assert _gone(pids[0], 5)


def test_workers_stop_when_the_front_is_killed(checkpoint):
    with _serving(checkpoint) as proc:
        pids, _, _ = _started(proc)
        proc.kill()
        proc.communicate(timeout=10)
        assert all(_gone(pid, 10) for pid in pids)


def test_start_errors_are_one_line(tmp_path, checkpoint):
    bad = _serve(tmp_path / "missing.pt")
    _, err = bad.communicate(timeout=120)
    assert bad.returncode == 2 and err.strip().count("\n") == 0
    assert re.search(r"^poselift serve: error: worker \d failed to start: checkpoint not found: ", err), err
    busy = zmq.Context.instance().socket(zmq.PULL)
    port = busy.bind_to_random_port("tcp://127.0.0.1")
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-m", "poselift", "serve", "--workers", "2", "--input",
                              f"tcp://127.0.0.1:{port}", "--checkpoint", str(checkpoint), "--device", "cpu"],
                             capture_output=True, text=True, env=env, timeout=120)
    finally:
        busy.close()
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "cannot bind" in out.stderr


def test_workers_run_with_the_cli_s_thread_pool_settings(sharded):
    """numpy loads in a spawned worker before its own code runs, so the front must have set
    OPENBLAS_NUM_THREADS (and OMP_WAIT_POLICY) for the workers to inherit: an OpenBLAS pool of
    spinning threads per worker took a whole core at load (poselift/thread_pools.py)."""
    import os
    from pathlib import Path

    for pid in sharded.pids:
        environ = Path(f"/proc/{pid}/environ")
        if not environ.exists():
            pytest.skip("no /proc on this system")
        variables = dict(item.split("=", 1) for item in environ.read_text().split("\0") if "=" in item)
        for name in ("OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY"):  # "1" and "PASSIVE" unless set explicitly
            assert variables[name] == os.environ[name]
