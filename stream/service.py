"""ZeroMQ side of the lifting loop: receive 2D, lift with :class:`LiftEngine`, publish 3D.

Socket choices (explained for consumers in docs/protocol.md):

* default (live): input **SUB** subscribed to everything, output **PUB**. A slow or
  absent consumer never stalls the lifter; PUB drops for that consumer once its send
  high-water mark (``PUB_SNDHWM``) is reached.
* ``lossless``: input **PULL**, output **PUSH**. Nothing is dropped: when the consumer
  falls behind, PUSH blocks, the server stops reading, and PULL/PUSH backpressure reaches
  the sender. Every accepted input frame gives exactly one pose message.

Both addresses are *bound* by the server (senders and consumers connect) and default to
127.0.0.1. Output messages are two frames, ``[topic, msgpack map]``; with
``single_frame=True`` only the map is sent (for consumers that use ZMQ_CONFLATE).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq

from .engine import Event, LiftEngine, PoseOut
from .loop import PoseLoop, Stage
from .protocol import (
    STATUS_TOPIC,
    Frame2D,
    ProtocolError,
    decode_inputs,
    PoseEncoder,
    PoseFields,
    encode_status,
    pose_topic,
    skeleton_map,
)
from .transport import DEFAULT_INPUT, DEFAULT_PUBLISH, MAXMSGSIZE, bind, curve_server

PUB_SNDHWM = 1000    # ~30 s of one 30 fps stream buffered per slow subscriber, then drop
PUSH_SNDHWM = 1000   # lossless: queue this many, then block (backpressure), never drop
RCVHWM = 10000       # input queue: absorb bursts from many senders
PUB_LINGER_MS = 1000   # on close, give queued poses a second to leave, never hang
PUSH_LINGER_MS = 10000  # lossless: wait longer for the consumer to take the tail
MAX_SEQ_STREAMS = 4096  # stream ids whose `seq` counter is remembered (memory bound)
MAX_DRAIN = 512       # input messages read per loop iteration before stepping the model


class PosePublisher:
    """Binds the output socket and sends pose and status messages.

    ``lossless``: PUSH (blocks when the consumer is behind) instead of PUB (drops).
    """

    def __init__(self, addr: str = DEFAULT_PUBLISH, *, lossless: bool = False, single_frame: bool = False,
                 context: zmq.Context | None = None, allow_remote: bool = False,
                 curve_secret_key: str | None = None) -> None:
        self.context = context or zmq.Context.instance()
        self.lossless = lossless
        self.single_frame = single_frame
        self.sock = self.context.socket(zmq.PUSH if lossless else zmq.PUB)
        if curve_secret_key:
            try:
                curve_server(self.sock, curve_secret_key)
            except BaseException:
                self.sock.close()
                raise
        self.sock.setsockopt(zmq.SNDHWM, PUSH_SNDHWM if lossless else PUB_SNDHWM)
        self.sock.setsockopt(zmq.LINGER, PUSH_LINGER_MS if lossless else PUB_LINGER_MS)
        try:
            self.endpoint = bind(self.sock, addr, allow_remote=allow_remote)
        except BaseException:
            self.sock.close()
            raise
        self.published = 0
        self._seq: dict[str, int] = {}  # per-stream pose counter sent as `seq` (bounded: see send_pose)
        self.undelivered = 0  # lossless poses given up on because the server stopped with no consumer
        self.status_dropped = 0  # status messages not sent because the (PUSH) consumer was behind
        # Asked while a lossless send waits for a consumer: True gives up on that message.
        self.should_stop: Callable[[], bool] | None = None
        # What status messages the publisher sends by itself (skeleton) report as counters.
        self.counters: Callable[[], dict[str, Any]] = lambda: {"published": self.published}
        self._skeletons: dict[str, dict[str, Any]] = {}  # the latest skeleton of each stream, for late joiners
        self._encoder = PoseEncoder()
        self._waited = False  # the last _send waited for a lossless consumer
        self._topics: dict[str, bytes] = {}  # pose_topic(stream) encoded, bounded like _seq

    def _send(self, topic: str | bytes, payload: bytes, *, block: bool = True) -> bool:
        """Send one message. PUB never waits (it drops at the high-water mark). PUSH waits
        for a consumer when ``block`` (lossless poses), polling so that :attr:`should_stop`
        can end the wait; status messages (``block=False``) are dropped instead."""
        parts = [payload] if self.single_frame else [topic if isinstance(topic, bytes) else topic.encode(), payload]
        while True:
            try:
                self.sock.send_multipart(parts, zmq.NOBLOCK)
                return True
            except zmq.Again:
                if not block:
                    self.status_dropped += 1
                    return False
                if self.should_stop is not None and self.should_stop():
                    self.undelivered += 1
                    return False
                self._waited = True
                self.sock.poll(100, zmq.POLLOUT)

    def send_pose(self, p: PoseOut) -> float:
        """Publish one pose; returns its latency in ms (receipt to send)."""
        return self.send_poses([p])[0]

    def send_poses(self, poses: list[PoseOut]) -> list[float]:
        """Publish a batch of poses in order (a stream's ``skeleton`` status just before the
        pose that first uses it); returns each one's latency in ms (receipt to encoding,
        which the send follows at once). The messages are encoded together
        (:class:`stream.protocol.PoseEncoder`); when a lossless send had to wait for the
        consumer, the poses after it are encoded again, so that their ``t_out`` and
        ``latency_ms`` include the wait, as they did when each pose was encoded alone."""
        seqs = [self._next_seq(p.stream) for p in poses]
        latencies: list[float] = []
        while len(latencies) < len(poses):
            self._send_from(poses, seqs, len(latencies), latencies)
        return latencies

    def _send_from(self, poses: list[PoseOut], seqs: list[int], start: int, latencies: list[float]) -> None:
        """Encode ``poses[start:]`` now and send them, appending their latencies, until
        one of them had to wait for the consumer (then the rest is left for a new call)."""
        now, t_out = time.perf_counter(), time.time()
        rest = poses[start:]
        fields = []
        for p, seq in zip(rest, seqs[start:]):
            motion = p.extras.get("motion")
            fields.append(PoseFields(p.stream, p.frame, p.t, t_out, (now - p.t_recv) * 1000.0, p.valid, p.warmup,
                                     p.filled, p.gap, p.root,
                                     motion.rotations if motion is not None and motion.valid else None, seq))
        for p, f, payload in zip(rest, fields, self._encoder.encode(fields, np.stack([p.joints for p in rest]))):
            motion = p.extras.get("motion")
            if motion is not None and motion.skeleton_changed:
                self.send_skeleton(p.stream, p.frame, motion.offsets, motion.skeleton_reason or "settled")
            self._waited = False
            if self._send(self._topic(p.stream), payload):
                self.published += 1
            latencies.append(f.latency_ms)
            if self._waited:
                return

    def _next_seq(self, stream: str) -> int:
        seq = self._seq.pop(stream, -1) + 1  # re-inserted last: the dict is ordered by recent use
        if len(self._seq) >= MAX_SEQ_STREAMS:
            del self._seq[next(iter(self._seq))]  # forget the least recently published stream
        self._seq[stream] = seq
        return seq

    def _topic(self, stream: str) -> bytes:
        topic = self._topics.get(stream)
        if topic is None:
            if len(self._topics) >= MAX_SEQ_STREAMS:
                self._topics.clear()
            topic = self._topics[stream] = pose_topic(stream).encode()
        return topic

    def send_skeleton(self, stream: str, frame: int, offsets: Any, reason: str) -> None:
        """A ``skeleton`` status message, sent before the pose that first uses it. It is not
        dropped like other status messages (a lossless consumer needs it to use rotations)."""
        skeleton = skeleton_map(offsets, frame)
        self._skeletons[stream] = skeleton
        self._send(STATUS_TOPIC, encode_status(
            "skeleton", self.counters(), stream=stream, reason=reason,
            detail=f"body {reason}: rest offsets for the rotations from frame {frame} on", skeleton=skeleton))

    def forget_skeleton(self, stream: str | None) -> None:
        """The stream reset or ended: its skeleton is no longer current."""
        self._skeletons.pop(stream, None)  # type: ignore[arg-type]

    def resend_skeletons(self) -> None:
        """Every stream's current skeleton again (``reason`` "current"), for consumers that
        connected after it was first sent (PUB/SUB); dropped, not waited for, when behind."""
        for stream, skeleton in self._skeletons.items():
            self._send(STATUS_TOPIC, encode_status("skeleton", self.counters(), stream=stream, reason="current",
                                                   detail="the stream's current skeleton (repeated every second)",
                                                   skeleton=skeleton), block=False)

    def send_status(self, event: str, counters: dict[str, Any], **kw: Any) -> None:
        """Status never blocks the lifter: with no PUSH consumer ready it is dropped."""
        self._send(STATUS_TOPIC, encode_status(event, counters, **kw), block=False)

    def close(self) -> None:
        self.sock.close()


class PoseServer:
    """``poselift serve``: a ZeroMQ 2D feed in, 3D poses out.

    Create it (this binds both addresses; see :attr:`input_endpoint` and
    :attr:`publish_endpoint` for the resolved ones), then call :meth:`serve_forever`
    or :meth:`poll_once` from one thread, and :meth:`close`.
    """

    def __init__(self, engine: LiftEngine, input_addr: str = DEFAULT_INPUT, publish_addr: str = DEFAULT_PUBLISH,
                 *, lossless: bool = False, single_frame: bool = False, status_interval_s: float = 1.0,
                 context: zmq.Context | None = None, allow_remote: bool = False,
                 curve_secret_key: str | None = None, curve_clients: str | None = None,
                 stages: list[Stage] | tuple[Stage, ...] = (), max_drain: int = MAX_DRAIN) -> None:
        """``curve_secret_key``: the server's CURVE key pair file (``poselift keygen``):
        both sockets encrypt, and peers need the server's public key. ``curve_clients``: a
        folder of the public keys (``*.key``) of the clients allowed to connect; others are
        refused (ZAP). Without it any peer that knows the server's public key may connect.
        ``stages``: per-batch post-processing before publishing (:class:`stream.loop.PoseLoop`).
        ``max_drain``: at most this many waiting input messages are read before the model
        steps (the batching bound, docs/protocol.md, Batching)."""
        if max_drain < 1:
            raise ValueError("max_drain must be at least 1")
        self.engine = engine
        self.max_drain = max_drain
        self._auth = None
        if curve_clients and not curve_secret_key:
            raise ValueError("--curve-clients needs --curve-secret-key")
        if curve_clients and not os.path.isdir(curve_clients):
            raise ValueError(f"{curve_clients}: not a folder of client public keys (*.key)")
        self.context = context or zmq.Context.instance()
        self.lossless = lossless
        self.status_interval_s = status_interval_s
        self.inp = self.context.socket(zmq.PULL if lossless else zmq.SUB)
        self.inp.setsockopt(zmq.RCVHWM, RCVHWM)
        self.inp.setsockopt(zmq.MAXMSGSIZE, MAXMSGSIZE)
        self.inp.setsockopt(zmq.LINGER, 0)
        if not lossless:
            self.inp.setsockopt(zmq.SUBSCRIBE, b"")
        try:
            if curve_secret_key:
                curve_server(self.inp, curve_secret_key)
                if curve_clients:
                    from zmq.auth.thread import ThreadAuthenticator

                    self._auth = ThreadAuthenticator(self.context)
                    self._auth.start()
                    self._auth.configure_curve(domain="*", location=curve_clients)
            self.input_endpoint = bind(self.inp, input_addr, allow_remote=allow_remote)
            self.publisher = PosePublisher(publish_addr, lossless=lossless, single_frame=single_frame,
                                           context=self.context, allow_remote=allow_remote,
                                           curve_secret_key=curve_secret_key)
        except BaseException:
            self.inp.close()
            if self._auth is not None:
                self._auth.stop()
            raise
        self.publish_endpoint = self.publisher.endpoint
        self.publisher.counters = self.counters
        self._deadline: float | None = None
        self.publisher.should_stop = self._should_stop
        self.received = 0
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.loop = PoseLoop(engine, batch_sink=self.publisher.send_poses, stages=stages)
        # the latest poses' latencies (for the exit summary); bounded: a list grew by one
        # float per pose for as long as serve ran (about 1 GiB a day at 16 streams x 30 fps)
        self.latencies_ms: deque[float] = self.loop.latencies_ms
        self._last_status = time.monotonic()
        self._stop = threading.Event()

    # ------------------------------------------------------------------- status
    def counters(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "accepted": self.accepted,
            "published": self.publisher.published,
            "rejected": dict(self.rejected),
            "rejected_total": sum(self.rejected.values()),
            "resets": self.engine.counters["resets"],
            "ended": self.engine.counters["ended"],
            "undelivered": self.publisher.undelivered,
            "streams": len(self.engine.streams),
        }

    def _report(self, events: list[Event]) -> None:
        for ev in events:
            if ev.kind == "rejected":
                self.rejected[ev.reason] += 1
            elif ev.kind in ("reset", "end"):
                self.publisher.forget_skeleton(ev.stream)
            self.publisher.send_status(ev.kind, self.counters(), stream=ev.stream, reason=ev.reason,
                                       detail=ev.detail)

    # --------------------------------------------------------------------- loop
    def poll_once(self, timeout_ms: int = 100) -> int:
        """Wait up to ``timeout_ms`` for input, read what is queued (up to ``max_drain``
        messages), decode and validate it as one batch, lift it in batched rounds and
        publish. Returns the number of messages read."""
        datas, times = self._drain(timeout_ms)
        if datas:
            self.received += len(datas)
            items = decode_inputs(datas)
            for item, t_recv in zip(items, times):
                try:
                    if isinstance(item, Exception):
                        raise item
                    item.t_recv = t_recv
                    if self.loop.submit(item) and isinstance(item, Frame2D):
                        self.accepted += 1
                except ProtocolError as exc:
                    self.engine.reject(exc.reason, exc.detail)
                except Exception as exc:  # never let one message take the server down
                    traceback.print_exception(exc, file=sys.stderr)
                    self.engine.reject("internal_error", f"{type(exc).__name__}: {exc}")
            self.loop.step()
            self._report(self.engine.take_events())
        now = time.monotonic()
        if self.status_interval_s and now - self._last_status >= self.status_interval_s:
            self._last_status = now
            self.publisher.send_status("counters", self.counters())
            self.publisher.resend_skeletons()
        return len(datas)

    def _drain(self, timeout_ms: int) -> tuple[list[bytes], list[float]]:
        """Everything waiting on the input socket, up to ``max_drain`` messages (the last
        frame of each), with each one's receipt time."""
        datas: list[bytes] = []
        times: list[float] = []
        if self.inp.poll(timeout_ms, zmq.POLLIN):
            recv, clock, limit = self.inp.recv_multipart, time.perf_counter, self.max_drain
            while len(datas) < limit:
                try:
                    parts = recv(zmq.NOBLOCK, copy=True)
                except zmq.Again:
                    break
                times.append(clock())
                datas.append(parts[-1])
        return datas, times

    def serve_forever(self, *, max_frames: int | None = None, duration_s: float | None = None) -> dict[str, Any]:
        """Run until :meth:`stop`, Ctrl-C, ``max_frames`` published poses or ``duration_s``."""
        self._deadline = None if duration_s is None else time.monotonic() + duration_s
        while not self._should_stop():
            self.poll_once(50)
            if max_frames is not None and self.publisher.published >= max_frames:
                break
        self.loop.flush()  # symmetric models: the poses still pending
        self.publisher.send_status("counters", self.counters())
        return self.counters()

    def _should_stop(self) -> bool:
        return self._stop.is_set() or (self._deadline is not None and time.monotonic() >= self._deadline)

    def stop(self) -> None:
        """Ask :meth:`serve_forever` (running in another thread) to return."""
        self._stop.set()

    def close(self) -> None:
        self.inp.close()
        self.publisher.close()
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def __enter__(self) -> "PoseServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
