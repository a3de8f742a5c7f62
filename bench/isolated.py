"""Measurements in a fresh interpreter, set up as ``serve`` sets itself up, and their output files.

A measuring function runs in a spawned process because numpy's BLAS pool and OpenMP read
their thread settings when they load (:func:`poselift.thread_pools.configure_thread_pools`
must come first, and the parent has usually loaded numpy already) and because the garbage
collector's setting is process-wide. The function gets a pipe end as its first argument and
sends its one answer through it.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from collections.abc import Callable
from pathlib import Path
from typing import Any

from poselift.thread_pools import configure_thread_pools


def in_spawned_process(target: Callable[..., None], *args: Any, timeout_s: float = 600.0) -> Any:
    """``target(conn, *args)`` in a spawned process; returns what it sends on ``conn``."""
    configure_thread_pools()  # inherited by the child, whose numpy loads before its first line
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child, *args))
    proc.start()
    try:
        if not parent.poll(timeout_s):
            raise RuntimeError(f"the measuring process did not answer within {timeout_s:g} s")
        return parent.recv()
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()


def write_results(result: dict[str, Any], md: str, json_path: str | None, md_path: str | None) -> None:
    """Write the JSON and the Markdown where asked, and print the Markdown."""
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    if md_path:
        Path(md_path).write_text(md)
    print(md)
