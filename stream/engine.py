"""The lifting loop without any I/O: frames in, 3D poses out, batched over streams.

``LiftEngine`` gives each stream id a slot: a :class:`model.StreamingLifter` slot and a row
of its :class:`stream.intake.Intake` (layout, normalisation, gap filling, state in arrays).
:meth:`LiftEngine.submit` queues a validated :class:`stream.protocol.Frame2D`;
:meth:`LiftEngine.run` first puts every frame submitted since through the intake in numpy
batches, then steps every stream that has a frame waiting in one batched
``StreamingLifter.step`` per round, until all queues are empty, and returns the poses in
per-stream frame order.

Every submitted frame yields exactly one :class:`PoseOut` (with a symmetric model some
come out later, when the future frames they need arrive or the stream is flushed or
ended). :class:`stream.loop.PoseLoop` wraps the engine with the publishing side.
"""

from __future__ import annotations

import inspect
import itertools
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from poselift.model import StreamingLifter
from poselift.model import root as root_model
from poselift.model.mirror import MirrorAveragedLifter
from poselift.model.skeleton import model_flip_permutation, model_input_index

from .gapfill import NUM_JOINTS, GapPolicy
from .intake import Intake, Meta, Reset, Step
from .protocol import Frame2D, ProtocolError


@dataclass
class PoseOut:
    """One 3D pose for one input frame. ``joints`` (17, 3) metres, root-relative, camera
    frame (x right, y down, z forward); ``root`` (3,) metres when the model has a
    trajectory model, else None."""

    stream: str
    frame: int
    t: float
    t_recv: float
    joints: np.ndarray
    valid: bool
    warmup: bool
    filled: list[int]
    gap: int = 0
    root: np.ndarray | None = None
    input2d: np.ndarray | None = None  # (17, 2) normalised model input (filled), for rendering
    # Which stretch of the stream this pose belongs to: a number unique to the engine that
    # changes whenever the stream's state starts over (new stream, reset, end, eviction), so a
    # per-stream post-processing stage knows when to forget what it kept (stream.motion_wire).
    epoch: int = 0
    # Filled by post-processing stages (stream.loop.PoseLoop ``stages``), e.g. motion outputs;
    # PosePublisher does not send them (yet).
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Event:
    """Something a status message reports: ``kind`` is "reset", "rejected" or "end"."""

    kind: str
    stream: str | None
    reason: str
    detail: str = ""


@dataclass
class _Stream:
    name: str
    slot: int
    last_seen: float
    queue: deque = field(default_factory=deque)  # intake items (Reset | Step | Empty) not yet handled
    pending: deque = field(default_factory=deque)  # metas (None = silent) awaiting a symmetric model's output
    steps: int = 0  # frames stepped since the last reset
    epoch: int = 0  # PoseOut.epoch of the poses it produces now (renewed by every reset)
    unfilled: int = 0  # frames submitted, not yet through the intake (the next run does them together)


def make_lifter(model: torch.nn.Module, batch_size: int, device: str, precision: str = "fp32") -> StreamingLifter:
    """A StreamingLifter, passing ``precision`` on when the model core supports it."""
    params = inspect.signature(StreamingLifter.__init__).parameters
    if "precision" in params:
        return StreamingLifter(model, batch_size=batch_size, device=device, precision=precision)
    if precision != "fp32":
        raise ValueError(f"precision {precision!r} is not supported by this version of model.StreamingLifter")
    return StreamingLifter(model, batch_size=batch_size, device=device)


class LiftEngine:
    """Per-stream state and batched stepping. Not thread-safe: use from one thread.

    Args:
        model: pose model (``TemporalModel``), 17 joints in, 17 out.
        trajectory_model: optional root-trajectory model (1 joint out); it must have the
            same latency as ``model`` (both causal, or the same receptive field).
        max_streams: stream slots; a new stream beyond that evicts the least recently
            seen stream if it has been idle for ``evict_after_s``, else it is rejected.
        policy: the missing-data thresholds (:class:`stream.gapfill.GapPolicy`).
    """

    def __init__(self, model: torch.nn.Module, *, trajectory_model: torch.nn.Module | None = None,
                 max_streams: int = 16, device: str = "cpu", precision: str = "fp32",
                 policy: GapPolicy | None = None, evict_after_s: float = 2.0,
                 trajectory_meta: dict[str, Any] | None = None, fov_deg: float | None = None,
                 input_layout: str = "h36m17", flip_tta: bool = False) -> None:
        cfg = model.config
        self.input_index = model_input_index(input_layout)  # a COCO-17 model: its joints from the H36M intake
        if cfg.num_joints_in != NUM_JOINTS or cfg.in_features != 2 or cfg.num_joints_out != NUM_JOINTS:
            raise ValueError("the streaming service needs a 17-joint 2D -> 17-joint 3D model")
        # flip_tta: each slot streams its mirror image too, and the two poses are averaged
        # (model/mirror.py): the same latency, one more network pass per frame.
        self.flip_tta = flip_tta
        input_perm = model_flip_permutation(input_layout)

        def lifter_for(net: torch.nn.Module) -> StreamingLifter | MirrorAveragedLifter:
            if not flip_tta:
                return make_lifter(net, max_streams, device, precision)
            return MirrorAveragedLifter(make_lifter(net, 2 * max_streams, device, precision), input_perm)

        self.lifter = lifter_for(model)
        self.traj: StreamingLifter | MirrorAveragedLifter | None = None
        if trajectory_model is not None:
            traj = lifter_for(trajectory_model)
            if traj.latency_frames != self.lifter.latency_frames or traj.config.num_joints_out != 1:
                raise ValueError("the trajectory model must output 1 joint and have the pose model's latency")
            self.traj = traj
        # The root (model/root.py): the pose fitted to the 2D joints, blended with a
        # depth-over-focal trajectory model's log(Z / f_n) when there is one. Both need the
        # focal length: the frame's own ``focal_px`` or one from ``fov_deg``. An older
        # trajectory model that predicts metres is published as it is.
        self.depth_over_focal = trajectory_model is not None and root_model.is_depth_over_focal(
            {"trajectory": trajectory_meta})
        self.metric_trajectory = trajectory_model is not None and not self.depth_over_focal
        self.fov_deg = root_model.DEFAULT_FOV_DEG if fov_deg is None else fov_deg
        root_model.focal_from_fov(self.fov_deg)  # raises ValueError outside (0, 180)
        self.policy = policy or GapPolicy()
        self.max_streams = max_streams
        self.evict_after_s = evict_after_s
        self.streams: dict[str, _Stream] = {}
        self._free = list(range(max_streams))
        self.intake = Intake(max_streams, self.policy)  # every slot's image size and gap-fill state
        self._unfilled: list[tuple[_Stream, Frame2D]] = []  # submitted, waiting for the intake (next run)
        self._pending_out: list[PoseOut] = []  # poses produced outside run() (evictions, ended streams)
        self._epochs = itertools.count(1)
        self.warmup()
        self.events: list[Event] = []
        self.counters: dict[str, int] = {"resets": 0, "batches": 0, "batched_rows": 0, "ended": 0}

    def warmup(self, rounds: int = 3) -> None:
        """Run a few throw-away steps so the first real frame does not pay for lazy
        initialisation (allocator, kernels); only allowed before any stream exists."""
        if self.streams:
            raise RuntimeError("warmup() would disturb live streams")
        for lifter in (self.lifter, self.traj):
            if lifter is None:
                continue
            x = torch.zeros(1, lifter.config.num_joints_in, lifter.config.in_features)
            for _ in range(rounds):
                lifter.step(x, [0])
            lifter.reset()

    # ------------------------------------------------------------------ properties
    @property
    def latency_frames(self) -> int:
        return self.lifter.latency_frames

    @property
    def receptive_field(self) -> int:
        return self.lifter.receptive_field

    @property
    def device(self) -> torch.device:
        return self.lifter.device

    # --------------------------------------------------------------------- intake
    def _stream_for(self, f: Frame2D, now: float) -> _Stream:
        s = self.streams.get(f.stream)
        if s is not None:
            return s
        if not self._free:
            idle = [x for x in self.streams.values()
                    if not x.queue and not x.unfilled and now - x.last_seen >= self.evict_after_s]
            if not idle:
                raise ProtocolError("too_many_streams", f"all {self.max_streams} stream slots are busy; "
                                    f"stream {f.stream!r} refused")
            victim = min(idle, key=lambda x: x.last_seen)
            self._pending_out.extend(self._reset(victim, "evicted"))
            del self.streams[victim.name]
            self._free.append(victim.slot)
        s = _Stream(f.stream, self._free.pop(0), now, epoch=next(self._epochs))
        self.intake.start(s.slot)
        self.lifter.reset([s.slot])
        if self.traj is not None:
            self.traj.reset([s.slot])
        self.streams[f.stream] = s
        return s

    def submit(self, f: Frame2D) -> None:
        """Queue one validated frame (raises ProtocolError("too_many_streams") if no slot).
        The intake (layout, normalisation, gap filling) runs at the next :meth:`run`, for
        all the frames submitted since, in numpy batches."""
        if not 0 <= f.frame < 2**64:  # the wire's range (msgpack integers); the gap filler keeps uint64
            raise ProtocolError("bad_type", f"'frame' must be an integer in [0, 2**64), got {f.frame!r}")
        now = time.monotonic()
        s = self._stream_for(f, now)
        s.last_seen = now
        s.unfilled += 1
        self._unfilled.append((s, f))

    def _intake(self) -> None:
        """Put the submitted frames through the intake: model inputs for all of them at
        once, then gap filling layer by layer (every stream's first frame, then its
        second, ...), and queue each frame's items on its stream."""
        todo, self._unfilled = self._unfilled, []
        if not todo:
            return
        xs = self.intake.model_inputs([f for _, f in todo])
        layers: list[list[tuple[_Stream, Frame2D, np.ndarray]]] = []
        depth: dict[int, int] = {}
        for (s, f), x in zip(todo, xs):
            s.unfilled -= 1
            if x is None:  # a hand-made Frame2D that cannot be mapped (never one from the wire)
                self.reject("internal_error", f"frame {f.frame} of stream {f.stream!r} cannot be mapped to the model input",
                            f.stream)
                continue
            k = depth.get(id(s), 0)
            depth[id(s)] = k + 1
            if k == len(layers):
                layers.append([])
            layers[k].append((s, f, x))
        for layer in layers:
            try:
                done = list(zip(layer, self.intake.process([s.slot for s, _, _ in layer], [f for _, f, _ in layer],
                                                           [x for _, _, x in layer])))
            except Exception:  # noqa: BLE001 (a bug: find the frame, never lose the others)
                done = []
                for row in layer:
                    s, f, x = row
                    try:
                        done.append((row, self.intake.process([s.slot], [f], [x])[0]))
                    except Exception as exc:  # noqa: BLE001
                        traceback.print_exception(exc, file=sys.stderr)
                        self.reject("internal_error", f"{type(exc).__name__}: {exc}", f.stream)
            for (s, _, _), its in done:
                s.queue.extend(its)

    def reject(self, reason: str, detail: str, stream: str | None = None) -> None:
        """Record an input message refused before it reached a stream (reported as status)."""
        self.events.append(Event("rejected", stream, reason, detail))

    def end(self, stream: str) -> None:
        """End one stream (the protocol's ``end`` message): lift what it has queued, keep its
        pending poses (a symmetric model's last (RF-1)/2) for the next :meth:`run`, free its
        slot and record an ``end`` event. Other streams' queued frames are stepped too (as
        the next run would), which changes nothing but the batching."""
        if stream not in self.streams:
            self.events.append(Event("end", stream, "unknown_stream",
                                     "no such stream (never seen, already ended, or evicted): nothing to flush"))
            return
        out = self.run()
        tail = self._close(stream)
        self._pending_out.extend(out + tail)
        self.counters["ended"] += 1
        self.events.append(Event("end", stream, "ended",
                                 f"stream ended: {len(tail)} pending pose(s) flushed, slot freed"))

    # ----------------------------------------------------------------------- run
    def run(self, emit: Callable[[PoseOut], None] | None = None, *,
            emit_batch: Callable[[list[PoseOut]], None] | None = None) -> list[PoseOut]:
        """Step all queued frames, batching streams round by round; return finished poses.

        With ``emit`` (each pose) or ``emit_batch`` (the list of one round's poses), poses
        are handed over as soon as their round is done (so the first frames of a backlog
        are published without waiting for the last) and the returned list is empty.
        """
        def hand_over(poses: list[PoseOut]) -> list[PoseOut]:
            if emit_batch is not None and poses:
                emit_batch(poses)
            elif emit is not None:
                for p in poses:
                    emit(p)
            else:
                return poses
            return []

        self._intake()
        out: list[PoseOut] = self._pending_out
        self._pending_out = []
        while True:
            out = hand_over(out)
            batch: list[tuple[_Stream, np.ndarray, Meta | None]] = []
            for s in self.streams.values():
                while s.queue and not isinstance(s.queue[0], Step):
                    item = s.queue.popleft()
                    if isinstance(item, Reset):
                        out.extend(self._reset(s, item.reason))
                    else:  # Empty: nothing liftable, published at once, invalid
                        out.append(self._pose(item.meta, np.zeros((NUM_JOINTS, 3), np.float32), None, False,
                                              warmup=True, epoch=s.epoch))
                if s.queue:
                    step = s.queue.popleft()
                    batch.append((s, step.x, step.meta))
            if not batch:
                return hand_over(out)
            slots = [s.slot for s, _, _ in batch]
            # Every slot in order: pass None, which lets the lifter use its whole-batch fast
            # path (a CUDA graph on GPUs); the demo and webcam always have this case.
            idx = None if len(slots) == self.max_streams and slots == sorted(slots) else slots
            x = torch.from_numpy(np.stack([b[1] for b in batch]).astype(np.float32))
            x = x if self.input_index is None else x[:, self.input_index]
            y = self.lifter.step(x, idx).cpu().numpy()
            root = self.traj.step(x, idx).cpu().numpy() if self.traj is not None else None
            self.counters["batches"] += 1
            self.counters["batched_rows"] += len(batch)
            done: list[tuple[int, Meta, bool, int]] = []  # (row, meta, warm-up, epoch) of finished poses
            latency, warm_steps = self.latency_frames, self.receptive_field - 1  # a pose is warm-up before
            for row, (s, _, meta) in enumerate(batch):
                s.pending.append(meta)
                k = s.steps  # index (since reset) of the frame just stepped
                s.steps += 1
                if k >= latency:
                    m = s.pending.popleft()
                    if m is not None:
                        done.append((row, m, k < warm_steps, s.epoch))
            if done:
                rows = [d[0] for d in done]
                roots = self._roots(y[rows], None if root is None else root[rows], [d[1] for d in done])
                finite = np.isfinite(y).all(axis=(1, 2))  # checked for the whole round at once
                for i, (row, m, warmup, epoch) in enumerate(done):
                    r = roots[i]
                    ok = finite[row] and (r is None or bool(np.isfinite(r).all()))
                    out.append(self._pose(m, y[row], r, m.valid and ok, warmup=warmup, epoch=epoch, checked=True))

    def process(self, frames: list[Frame2D]) -> list[PoseOut]:
        """Submit frames and run; frames that cannot get a slot are recorded as rejected events."""
        for f in frames:
            try:
                self.submit(f)
            except ProtocolError as exc:
                self.reject(exc.reason, exc.detail, f.stream)
        return self.run()

    def _roots(self, poses: np.ndarray, outputs: np.ndarray | None, metas: list[Meta]) -> list[np.ndarray | None]:
        """The root (camera metres) of each finished pose, in one vectorised pass.

        ``poses`` (N, 17, 3) the pose model's joints, ``outputs`` (N, 1, 3) the trajectory
        model's (or None), ``metas`` the frames they belong to. The fitted root
        (:func:`poselift.model.root.root_from_pose`; joints the intake filled in are left out)
        is blended with the trajectory model's (:func:`~poselift.model.root.fuse_roots`);
        without a trajectory model the fit alone is the root, and a frame it cannot fit has
        none (None) rather than an invalid pose.
        """
        if self.metric_trajectory and outputs is not None:
            return [o[0] for o in outputs]
        n = len(metas)
        nothing = np.full((NUM_JOINTS, 2), np.nan)
        keypoints = np.stack([nothing if m.x is None else m.x for m in metas])
        weights = None
        if any(m.filled for m in metas):
            weights = np.ones((n, NUM_JOINTS))
            for i, m in enumerate(metas):
                weights[i, m.filled] = 0.0
        width = np.array([m.width or 1 for m in metas], np.float64)
        height = np.array([m.height or 1 for m in metas], np.float64)
        focal = np.array([m.focal_px if m.focal_px is not None else root_model.focal_from_fov(self.fov_deg, m.width or 1)
                          for m in metas], np.float64)
        fitted = root_model.root_from_pose(poses, keypoints, focal, width, height, weights)
        if self.depth_over_focal and outputs is not None:
            network = root_model.root_from_depth(root_model.depth_over_focal_from_output(outputs),
                                                 keypoints[:, 0], focal, width, height)
            fused = root_model.fuse_roots(network, fitted)
            return [None if metas[i].x is None else fused[i] for i in range(n)]
        return [fitted[i] if np.isfinite(fitted[i]).all() else None for i in range(n)]

    def _pose(self, m: Meta, joints: np.ndarray, root: np.ndarray | None, valid: bool, warmup: bool,
              epoch: int = 0, checked: bool = False) -> PoseOut:
        """``checked``: the caller already made ``valid`` false for non-finite joints or root."""
        if not checked and (not np.isfinite(joints).all() or (root is not None and not np.isfinite(root).all())):
            valid = False  # never publish NaN/inf as a valid pose (e.g. overflow in reduced precision)
        return PoseOut(m.stream, m.frame, m.t, m.t_recv, np.asarray(joints, np.float32), bool(valid), bool(warmup),
                       m.filled, m.gap, root, m.x, epoch)

    # -------------------------------------------------------------------- resets
    def _reset(self, s: _Stream, reason: str) -> list[PoseOut]:
        """Flush a stream's pending poses (symmetric models) and reset its slot."""
        out: list[PoseOut] = []
        if s.steps or s.pending:
            tails = self.lifter.flush([s.slot])[0].cpu().numpy()
            roots = self.traj.flush([s.slot])[0].cpu().numpy() if self.traj is not None else None
            metas = list(s.pending)
            finished = [(i, m) for i, m in enumerate(metas[len(metas) - len(tails):]) if m is not None]
            if finished:
                rows = [i for i, _ in finished]
                fitted = self._roots(tails[rows], None if roots is None else roots[rows], [m for _, m in finished])
                for j, (i, m) in enumerate(finished):
                    out.append(self._pose(m, tails[i], fitted[j], m.valid, warmup=False, epoch=s.epoch))
        s.pending.clear()
        s.steps = 0
        s.epoch = next(self._epochs)
        self.lifter.reset([s.slot])
        if self.traj is not None:
            self.traj.reset([s.slot])
        if reason != "flush":
            self.counters["resets"] += 1
            self.events.append(Event("reset", s.name, reason, _RESET_DETAIL.get(reason, reason)))
        return out

    def flush(self, stream: str | None = None) -> list[PoseOut]:
        """End one stream (or all): run queued frames, emit pending poses, free the slots."""
        out = self.run()
        for name in list(self.streams) if stream is None else [stream]:
            out.extend(self._close(name))
        return out

    def _close(self, name: str) -> list[PoseOut]:
        """Forget a stream whose queue is empty: its pending poses, and its slot freed."""
        s = self.streams.pop(name, None)
        if s is None:
            return []
        out = self._reset(s, "flush")
        self._free.append(s.slot)
        return out

    def take_events(self) -> list[Event]:
        ev, self.events = self.events, []
        return ev


_RESET_DETAIL = {
    "restart": "frame number did not increase: treated as a sender restart, stream state reset",
    "gap": "gap longer than max_gap_frames (dropped or empty frames): stream state reset",
    "size_change": "image size changed: stream state reset",
    "evicted": "stream idle and its slot was needed by a new stream",
}
