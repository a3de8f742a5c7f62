"""How torch's OpenMP workers wait, set once for every process that runs the lifter."""

from __future__ import annotations

import os


def prefer_passive_waiting() -> None:
    """Ask OpenMP workers to sleep, not spin, between parallel regions, unless the
    environment already says otherwise (an explicit ``OMP_WAIT_POLICY`` wins).

    libgomp reads the variable once, when torch loads, so this must run before anything
    imports torch. Why: a worker that busy-waits after every model step (the default
    policy) steals a core from the loop's main thread whenever torch runs more than one
    thread; on a small shared machine that turned the motion stage's 0.3 ms into 4-9 ms
    stalls in some processes, and two server threads collapsed the load curve to 625 fps.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
