"""Where a lone frame's time goes in ``serve``'s loop (issue 16: the light-load latency).

At light load (8 streams x 30 fps) every frame arrives alone, so it pays everything a round
costs at batch 1. This bench feeds serve's real :meth:`stream.service.PoseServer.poll_once`
(built by :func:`poselift.stream.apps.serve_parts`, as ``poselift serve`` builds it) one
pre-encoded message per call, with reading and sending replaced by in-memory stand-ins as in
:mod:`bench.server_cpu`, and times each part of the round by wrapping the calls the loop makes:

* ``decode``: :func:`stream.protocol.decode_inputs` (unpack and validate);
* ``intake``: layout mapping, normalisation and gap filling (``Intake.model_inputs`` and
  ``Intake.process``);
* ``pose step`` / ``trajectory step``: the two networks' streaming steps at batch 1;
* ``roots``: the fitted root blended with the trajectory network's (``LiftEngine._roots``);
* one line per stage (frame-rate check, motion stage);
* ``publish``: encoding (and the stand-in send);
* ``rest``: the median round minus the parts' medians (the engine's rounds, pose objects,
  events, the loop itself).

Each part is the median over ``frames`` rounds once the streams are warm and the heap is
settled, so the parts do not add up to any one round exactly. Run in a spawned process, so
that numpy's and OpenMP's thread settings are in place before they load, as in ``serve``.

``python -m poselift.bench.lone_frame [--frames 3000] [--root blend|fit] [--json OUT] [--md OUT]``
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from poselift.stream import ROOT_MODES
from poselift.thread_pools import configure_thread_pools

from .isolated import in_spawned_process, write_results


def _timed(fn: Callable[..., Any], times: list[float]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times.append(time.perf_counter() - start)
    return call


def lone_frame_parts(frames: int = 3000, streams: int = 8, root: str = "blend") -> dict[str, Any]:
    """In this process: ``{"parts_ms": {part: median ms}, "round_ms": {p50, p90, p99}, ...}``;
    ``root``: ``serve --root`` (``fit`` runs no trajectory network)."""
    import numpy as np

    from poselift.gc_policy import settle_heap
    from poselift.stream import service

    from .server_cpu import in_memory_server

    # round robin over the streams, one message a poll: every frame is a round of its own
    parts, server = in_memory_server(streams, 1, max_streams=max(streams, 8), warn=lambda _line: None, root=root)
    times: dict[str, list[float]] = defaultdict(list)
    engine = parts.engine
    decode = service.decode_inputs
    service.decode_inputs = _timed(decode, times["decode"])
    try:
        intake = engine.intake
        intake.model_inputs = _timed(intake.model_inputs, times["intake"])
        intake.process = _timed(intake.process, times["intake (gap fill)"])
        engine.lifter.step = _timed(engine.lifter.step, times["pose step"])
        if engine.traj is not None:
            engine.traj.step = _timed(engine.traj.step, times["trajectory step"])
        engine._roots = _timed(engine._roots, times["roots"])
        server.loop.stages = [_timed(stage, times[f"stage: {type(stage).__name__}"]) for stage in server.loop.stages]
        server.publisher.send_poses = _timed(server.publisher.send_poses, times["publish"])
        server.loop.batch_sink = server.publisher.send_poses
        for _ in range(min(500, 2 * 240 * streams)):  # every stream started and warm (240 frames each)
            server.poll_once()
        settle_heap()
        for t in times.values():
            t.clear()
        rounds = []
        for _ in range(frames):
            start = time.perf_counter()
            server.poll_once()
            rounds.append(time.perf_counter() - start)
    finally:
        service.decode_inputs = decode
        server.close()
    per_round = {k: float(np.median(v)) * 1e3 * len(v) / frames for k, v in times.items() if v}
    # the two intake calls are one part
    per_round["intake"] = per_round.pop("intake", 0.0) + per_round.pop("intake (gap fill)", 0.0)
    r = np.array(rounds) * 1e3
    per_round["rest"] = max(0.0, float(np.median(r)) - sum(per_round.values()))
    return {"parts_ms": per_round,
            "round_ms": {"p50": float(np.median(r)), "p90": float(np.percentile(r, 90)),
                         "p99": float(np.percentile(r, 99))},
            "frames": frames, "streams": streams, "kernel": engine.lifter.backend, "root": root}


def _child(conn, frames: int, streams: int, root: str) -> None:
    configure_thread_pools()
    conn.send(lone_frame_parts(frames, streams, root))


def measure(frames: int = 3000, streams: int = 8, root: str = "blend") -> dict[str, Any]:
    """:func:`lone_frame_parts` in a spawned process, with the machine named."""
    from .hardware import cpu_model

    load_before = os.getloadavg()[0]
    out = in_spawned_process(_child, frames, streams, root)
    out["hardware"] = f"{cpu_model()}, {os.cpu_count()} cores"
    out["load_average"] = [load_before, os.getloadavg()[0]]
    return out


def markdown(r: dict[str, Any]) -> str:
    parts = r["parts_ms"]
    total = r["round_ms"]["p50"]
    lines = ["# A lone frame through serve's loop, without sockets (median ms per round)", "",
             f"{r['hardware']}; load average {r['load_average'][0]:.1f} at start, {r['load_average'][1]:.1f} at end; "
             f"{r['frames']} rounds of one message, {r['streams']} streams in turn; fp32 kernel {r['kernel']}; "
             f"root: {r.get('root', 'blend')}.", "",
             "| part | ms | share |", "|---|---:|---:|"]
    for name, ms in sorted(parts.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {ms:.3f} | {ms / total:.0%} |")
    rd = r["round_ms"]
    lines += [f"| **round (poll_once)** | **{total:.3f}** | p90 {rd['p90']:.3f}, p99 {rd['p99']:.3f} |"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m poselift.bench.lone_frame", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=3000, help="rounds to time (default 3000)")
    p.add_argument("--root", choices=ROOT_MODES, default="blend",
                   help="serve --root: blend (as shipped) or fit (no trajectory network)")
    p.add_argument("--json")
    p.add_argument("--md")
    args = p.parse_args(argv)
    r = measure(args.frames, root=args.root)
    write_results(r, markdown(r), args.json, args.md)
    return r


if __name__ == "__main__":
    main()
