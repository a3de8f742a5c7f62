"""Interleaved timing: every candidate is measured in the same rounds, so noise hits all alike.

The project's machines are shared and noisy. A ratio is only meaningful when both sides
were measured under the same conditions, so :func:`interleave` runs the candidates round
robin (in a shuffled order each round) until a time budget is spent and reports p50/p99
of each call.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class Samples:
    name: str
    times_s: list[float] = field(default_factory=list)

    def quantile(self, q: float) -> float:
        ts = sorted(self.times_s)
        if not ts:
            return float("nan")
        pos = min(len(ts) - 1, max(0, int(round(q * (len(ts) - 1)))))
        return ts[pos]

    @property
    def p50_ms(self) -> float:
        return self.quantile(0.5) * 1e3

    @property
    def p99_ms(self) -> float:
        return self.quantile(0.99) * 1e3

    @property
    def min_ms(self) -> float:
        return min(self.times_s) * 1e3 if self.times_s else float("nan")

    def summary(self) -> dict:
        return {"p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "min_ms": self.min_ms, "n": len(self.times_s)}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def interleave(
    candidates: dict[str, Callable[[], object]],
    budget_s: float = 5.0,
    warmup: int = 3,
    round_s: float = 0.05,
    min_samples: int = 5,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Samples]:
    """Time each zero-argument callable, interleaved, one call per sample.

    Each round runs every candidate ``reps`` times back to back, where ``reps`` makes a
    candidate's share of the round about ``round_s``: fast ones get many samples, slow
    ones a few, and all see the same stretch of machine time.
    """
    rng = random.Random(seed)
    est: dict[str, float] = {}
    for name, fn in candidates.items():
        for _ in range(warmup):
            fn()
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        est[name] = max(time.perf_counter() - t, 1e-6)
    reps = {n: max(1, min(200, int(round_s / e))) for n, e in est.items()}
    out = {n: Samples(n) for n in candidates}
    order = list(candidates)
    deadline = time.perf_counter() + budget_s
    while True:
        rng.shuffle(order)
        for name in order:
            fn = candidates[name]
            ts = out[name].times_s
            for _ in range(reps[name]):
                t = time.perf_counter()
                fn()
                _sync(device)
                ts.append(time.perf_counter() - t)
        if time.perf_counter() >= deadline and all(len(s.times_s) >= min_samples for s in out.values()):
            return out
