"""Python's garbage collector, set once for a long-running lifting loop (``serve``, ``webcam``,
the load bench's server).

Why: the collector's cost is set by how many objects it walks, not by how much garbage there
is. Once torch, numpy, scipy and the model are loaded the process holds about 180,000 objects,
and one full collection walks them all: about 130 ms on the 2-core bench machine. Meanwhile
every input message is unpacked into some 50 short-lived objects (a list per joint, its
floats), so one drain of 512 messages makes ~25,000 allocations. With the default threshold
(700 allocations per young collection) that was ~35 young collections per drain and a full
walk every few drains: :func:`settle_heap` takes serve's loop from 180 to 137 µs of CPU per
pose at 64 streams and from 150 to 120 at 256 (``python -m poselift.bench.server_cpu``,
bench/results/server_cpu.md), and each full walk was a pause every pose in flight waited for.

:func:`settle_heap` moves everything alive after start-up into the permanent generation
(:func:`gc.freeze`: collections skip it; it is the long-lived library and model state, never
garbage), and raises the young threshold so that short-lived message objects, which reference
counting frees anyway, trigger a collection only every ``YOUNG_THRESHOLD`` allocations. Cyclic
garbage made later is still found: collections still run, on less work.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # allocations between young collections (CPython's default is 700)


def settle_heap(young_threshold: int = YOUNG_THRESHOLD) -> int:
    """Collect once, freeze what is left (start-up state) and raise the young-generation
    threshold (never lowers one that is already higher). Call it after the model and the
    engine are loaded, just before the loop starts. Returns the number of frozen objects."""
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, int(young_threshold)), middle, old)
    return gc.get_freeze_count()
