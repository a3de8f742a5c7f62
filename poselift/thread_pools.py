"""How the native thread pools under torch and numpy behave, set once for every process that
runs the lifter (the CLI, ``serve``'s workers, the benches' spawned servers)."""

from __future__ import annotations

import os


def configure_thread_pools() -> None:
    """Before torch or numpy loads: OpenMP workers sleep, not spin, between parallel regions
    (``OMP_WAIT_POLICY=PASSIVE``), and numpy's OpenBLAS runs on the calling thread
    (``OPENBLAS_NUM_THREADS=1``). An explicit setting of either in the environment wins.

    Both libraries read their variable once, when they load, so this must run before anything
    imports torch or numpy; spawned child processes inherit it. Why:

    * a torch OpenMP worker that busy-waits after every model step (the default policy) steals
      a core from the loop's main thread whenever torch runs more than one thread: on a small
      shared machine that turned the motion stage's 0.3 ms into 4-9 ms stalls, and two server
      threads collapsed the load curve to 625 fps;
    * the motion stage and the root fit multiply matrices of a few hundred rows per round,
      large enough for OpenBLAS to split them over its pool, whose workers then spin between
      calls: at 64 and 256 streams serve's loop used two cores' CPU time for the wall time of
      one (277 vs 120 µs of CPU per pose at 256 streams, the same wall time;
      bench/results/server_cpu.md), a core the sender, a second worker or the neighbours
      needed. Splits of matrices this small gain nothing.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
