"""GapBank (the fill state of many streams in arrays, stepped a batch at a time) gives, frame
for frame, what the per-stream GapFiller of the previous release gave: the reference below is
that code, unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from poselift.stream.gapfill import NUM_JOINTS, FillResult, GapBank, GapPolicy, structural_fill


def _reference():
    class ReferenceFiller:
        """The per-stream fill state. Call :meth:`process` once per received frame, in order."""

        def __init__(self, policy: GapPolicy | None = None) -> None:
            self.policy = policy or GapPolicy()
            self.last_frame: int | None = None
            self.clear()

        def clear(self) -> None:
            """Forget the history (the frame counter is kept for restart detection)."""
            self.last: np.ndarray | None = None  # last filled frame (17, 2)
            self.age = np.zeros(NUM_JOINTS, dtype=np.int64)  # frames since each joint was observed
            self.empty_run = 0

        def process(self, kp: np.ndarray, frame: int) -> FillResult:
            """``kp`` (17, 2) normalised, NaN where missing; ``frame`` the sender's frame number."""
            p = self.policy
            reset = None
            gap = 0
            if self.last_frame is not None:
                if frame <= self.last_frame:
                    reset = "restart"
                else:
                    gap = frame - self.last_frame - 1
                    if gap > p.max_gap_frames:
                        reset = "gap"
            if reset is not None:
                self.clear()
                gap = 0
            self.last_frame = frame
            kp = np.asarray(kp, dtype=np.float32)
            observed = ~np.isnan(kp).any(axis=-1)
            filled = [int(j) for j in np.nonzero(~observed)[0]]
            n_obs = int(observed.sum())

            if self.last is None:
                if n_obs < p.min_observed_joints:
                    return FillResult(None, filled, False, 0, reset=reset)
                x = structural_fill(np.where(observed[:, None], kp, 0.0), observed)
                self.age[:] = np.where(observed, 0, p.max_hold_frames + 1)
                self.last = x
                return FillResult(x, filled, True, 0, reset=reset)

            silent_count = gap
            if n_obs < p.min_observed_joints:  # empty frame: hold everything
                self.empty_run += 1 + gap
                if self.empty_run > p.max_gap_frames:
                    self.clear()
                    return FillResult(None, list(range(NUM_JOINTS)), False, 0, reset="gap")
                x = self.last.copy()
                valid = False
                filled = list(range(NUM_JOINTS))
                self.age += 1 + gap
            else:
                self.empty_run = 0
                self.age = np.where(observed, 0, self.age + 1 + gap)
                x = np.where(observed[:, None], kp, self.last)
                stale = self.age > p.max_hold_frames
                if stale.any():
                    x = structural_fill(x, ~stale)
                valid = True
            silent = np.zeros((0, NUM_JOINTS, 2), np.float32)
            if silent_count:
                w = (np.arange(1, silent_count + 1, dtype=np.float32) / (silent_count + 1))[:, None, None]
                silent = (self.last[None] * (1 - w) + x[None] * w).astype(np.float32)
            self.last = x.astype(np.float32)
            return FillResult(self.last, filled, valid, gap, silent, reset)

    return ReferenceFiller


ReferenceFiller = _reference()


def frames_for(rng: np.random.Generator, n: int, start: int = 0) -> list[tuple[np.ndarray, int]]:
    """A stream with everything the policy handles: missing joints, empty frames, dropped
    frames, long gaps and restarts."""
    out, frame = [], start + int(rng.integers(0, 5))
    for _ in range(n):
        kp = rng.uniform(-1, 1, (NUM_JOINTS, 2)).astype(np.float32)
        kind = rng.random()
        if kind < 0.25:
            kp[rng.random(NUM_JOINTS) < rng.random()] = np.nan
        elif kind < 0.35:
            kp[:] = np.nan
        step = rng.choice([1, 1, 1, 1, 2, 4, 17, 40, 0, -3])
        frame = min(2**64 - 1, max(0, frame + int(step)))
        out.append((kp, frame))
    return out


def same(a: FillResult, b: FillResult) -> None:
    assert (a.x is None) == (b.x is None)
    if a.x is not None:
        assert a.x.dtype == b.x.dtype and np.array_equal(a.x, b.x)
    assert a.filled == b.filled and a.valid == b.valid and a.gap == b.gap and a.reset == b.reset
    assert a.silent.shape == b.silent.shape and a.silent.dtype == b.silent.dtype and np.array_equal(a.silent, b.silent)


@pytest.mark.parametrize("start", [0, 2**63 - 200, 2**64 - 2000])  # frame numbers span the wire's range
@pytest.mark.parametrize("policy", [GapPolicy(), GapPolicy(max_gap_frames=3, max_hold_frames=2, min_observed_joints=10),
                                    GapPolicy(max_gap_frames=0, max_hold_frames=0, min_observed_joints=1)])
def test_bank_equals_the_per_stream_filler(policy, start):
    rng = np.random.default_rng(5)
    streams = 12
    seqs = [frames_for(rng, 150, start) for _ in range(streams)]
    refs = [ReferenceFiller(policy) for _ in range(streams)]
    bank = GapBank(streams + 3, policy)
    slots = rng.permutation(streams + 3)[:streams]
    pos = [0] * streams
    while any(pos[s] < len(seqs[s]) for s in range(streams)):
        # a random subset of streams has a frame in this batch, as in a server drain
        active = [s for s in range(streams) if pos[s] < len(seqs[s]) and rng.random() < 0.7]
        if not active:
            continue
        if rng.random() < 0.05:  # an image size change clears one stream's history
            s = active[0]
            refs[s].clear()
            bank.clear([slots[s]])
        kp = np.stack([seqs[s][pos[s]][0] for s in active])
        frames = np.array([seqs[s][pos[s]][1] for s in active], np.uint64)
        got = bank.process(slots[active], kp, frames)
        for i, s in enumerate(active):
            same(got.result(i), refs[s].process(*seqs[s][pos[s]]))
            pos[s] += 1
