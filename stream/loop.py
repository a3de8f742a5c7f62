"""The one submit -> step -> publish loop, shared by ``demo``, ``webcam``, ``serve``
(:class:`stream.service.PoseServer`), the offline ``video`` command and the pipeline
benchmark (bench/service.py).

:class:`PoseLoop` wraps a :class:`stream.engine.LiftEngine`: :meth:`PoseLoop.submit` takes a
frame (or an end-of-stream message), :meth:`PoseLoop.step` lifts everything queued, and
every finished batch of poses goes through the post-processing ``stages`` and then, pose by
pose, to the ``sink`` (a publisher, a list, a window...). Latency (receipt to sink) is
recorded here, once, for all of them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from .engine import LiftEngine, PoseOut
from .protocol import EndOfStream, Frame2D, ProtocolError

# A post-processing stage: gets the poses of one round (one batched model step, possibly
# several streams, in per-stream frame order) and returns the poses to hand on.
Stage = Callable[[list[PoseOut]], list[PoseOut]]
# Where poses go. It may return the pose's latency in ms (e.g. PosePublisher.send_pose,
# measured at the send); None lets the loop measure it when the sink returns.
Sink = Callable[[PoseOut], "float | None"]
# Where a whole round of poses goes at once (e.g. PosePublisher.send_poses, which encodes them
# together); returns each pose's latency in ms.
BatchSink = Callable[[list[PoseOut]], list[float]]

LATENCY_WINDOW = 100_000  # latencies kept for the summaries (bounded: serve runs for days)


class PoseLoop:
    """submit -> step -> stages -> sink, written once.

    Args:
        engine: the lifting engine (per-stream intake and batched model steps).
        sink: called with each finished pose, in order; may return its latency in ms.
        batch_sink: instead of ``sink``, called with each round's list of poses (after the
            stages); returns their latencies in ms.
        stages: per-batch post-processing hook, applied in order to the list of poses of
            each round before any of them reaches the sink. A stage may change poses in
            place (e.g. fill ``PoseOut.extras`` with per-stream skeleton, rotations, root
            or a BVH/VMC frame), replace them, or drop some (return a shorter list); it
            must keep each stream's poses in frame order. Stages run in the loop's thread,
            on every batch (including the poses flushed by :meth:`flush` and by an ``end``
            message), so a stage that keeps per-stream state sees each stream's poses
            exactly once, in order.
    """

    def __init__(self, engine: LiftEngine, sink: Sink | None = None, *, stages: Sequence[Stage] = (),
                 latency_window: int = LATENCY_WINDOW, batch_sink: BatchSink | None = None) -> None:
        if sink is not None and batch_sink is not None:
            raise ValueError("give a sink or a batch_sink, not both")
        self.engine = engine
        self.sink = sink
        self.batch_sink = batch_sink
        self.stages: list[Stage] = list(stages)
        self.latencies_ms: deque[float] = deque(maxlen=latency_window)
        self.delivered = 0  # poses handed to the sink
        self.valid = 0      # ... of which valid
        self.last: PoseOut | None = None

    def submit(self, item: Frame2D | EndOfStream) -> bool:
        """Queue a frame, or end a stream. A frame that gets no stream slot is recorded as a
        ``rejected`` engine event and False is returned."""
        if isinstance(item, EndOfStream):
            self.engine.end(item.stream)
            return True
        try:
            self.engine.submit(item)
        except ProtocolError as exc:
            self.engine.reject(exc.reason, exc.detail, item.stream)
            return False
        return True

    def step(self) -> int:
        """Lift everything queued; each round's poses go through the stages to the sink
        as soon as the round is done. Returns the number of poses delivered."""
        before = self.delivered
        self.engine.run(emit_batch=self._deliver)
        return self.delivered - before

    def feed(self, frames: Iterable[Frame2D]) -> int:
        """Submit and step frame by frame (the live pace: one pose out per frame in)."""
        n = 0
        for f in frames:
            self.submit(f)
            n += self.step()
        return n

    def flush(self, stream: str | None = None) -> int:
        """End one stream (or all) without an event: its pending poses are delivered."""
        before = self.delivered
        self._deliver(self.engine.flush(stream))
        return self.delivered - before

    def _deliver(self, poses: list[PoseOut]) -> None:
        for stage in self.stages:
            poses = stage(poses)
        if self.batch_sink is not None and poses:
            self.latencies_ms.extend(self.batch_sink(poses))
            self.delivered += len(poses)
            self.valid += sum(bool(p.valid) for p in poses)
            self.last = poses[-1]
            return
        for p in poses:
            latency = self.sink(p) if self.sink is not None else None
            self.latencies_ms.append((time.perf_counter() - p.t_recv) * 1000.0 if latency is None else latency)
            self.delivered += 1
            self.valid += bool(p.valid)
            self.last = p


def collect(poses: list[PoseOut], then: Sink | None = None) -> Sink:
    """A sink that appends each pose to ``poses`` and then calls ``then`` (if any)."""
    def sink(p: PoseOut) -> float | None:
        poses.append(p)
        return then(p) if then is not None else None
    return sink
