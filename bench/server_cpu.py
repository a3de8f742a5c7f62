"""What ``serve``'s loop costs per pose, without sockets or a sender (issue 16).

The load curve (:mod:`bench.load`) measures the service end to end, but on a small shared
machine its sender, receiver and neighbours move it by ±30 %. This bench isolates the server:
the real :meth:`stream.service.PoseServer.poll_once` (decode, validate, intake, batched steps
of the pose and trajectory models, roots, motion stage, encoding) on pre-encoded messages of
S streams, with reading and sending replaced by in-memory stand-ins, and reports the CPU time
per pose. Each variant runs in its own spawned process, because the garbage-collector setting
is process-wide, and the variants take turns, ``repeats`` times:

* ``shipped``: as ``poselift serve`` runs (:func:`poselift.gc_policy.settle_heap`, the fp32
  kernel timed for this CPU, :func:`poselift.model.kernels.fp32_kernel`);
* ``default GC``: the same without ``settle_heap``;
* ``oneDNN kernel``: the same with ``POSELIFT_FP32_KERNEL=onednn`` (the choice before the
  timing);
* ``OpenBLAS pool``: the same with numpy's OpenBLAS on as many threads as cores (its default
  before :func:`poselift.thread_pools.configure_thread_pools`).

CPU time counts every thread of the process, so a pool that spins shows up there, not in the
wall time.

``python -m poselift.bench.server_cpu [--streams 8,64,256] [--repeats 3] [--json OUT] [--md OUT]``
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

from poselift.thread_pools import configure_thread_pools

from .isolated import in_spawned_process, write_results

VARIANTS: dict[str, dict[str, Any]] = {
    "shipped": {"settle": True, "env": {}},
    "default GC": {"settle": False, "env": {}},
    "oneDNN kernel": {"settle": True, "env": {"POSELIFT_FP32_KERNEL": "onednn"}},
    "OpenBLAS pool": {"settle": True, "env": {"OPENBLAS_NUM_THREADS": str(os.cpu_count() or 2)}},
}
MODEL_KEYS = ("pose_step_us_per_stream", "trajectory_step_us_per_stream")
DRAIN = 512  # messages per poll, the server's default bound (stream.service.MAX_DRAIN)


def in_memory_server(streams: int, per_poll: int, *, max_streams: int | None = None,
                     warn: Callable[[str], None] | None = None, root: str = "blend") -> tuple[Any, Any]:
    """``(serve_parts(...), PoseServer)`` as ``poselift serve --lossless`` builds them, with the
    sockets replaced: each ``poll_once`` reads the next ``per_poll`` of ``streams`` streams'
    pre-encoded messages (round robin, from the start again at the end) and sends go nowhere,
    so the loop itself is what a bench times. ``warn``: the frame-rate check's line (see
    :func:`poselift.stream.apps.serve_parts`); ``root``: ``serve --root``."""
    from poselift.stream.apps import serve_parts
    from poselift.stream.service import PoseServer

    from .load import messages

    parts = serve_parts(max_streams=max_streams or streams, warn=warn, root=root)
    server = PoseServer(parts.engine, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", lossless=True,
                        status_interval_s=0, stages=parts.stages)
    frames = 240
    msgs = messages(streams, frames)
    order = [msgs[s][f] for f in range(frames) for s in range(streams)]
    position = [0]

    def drain(_timeout_ms: int) -> tuple[list[bytes], list[float]]:
        i = position[0]
        batch = order[i:i + per_poll]
        position[0] = 0 if i + per_poll >= len(order) else i + per_poll
        return batch, [time.perf_counter()] * len(batch)

    server._drain = drain
    server.publisher._send = lambda topic, payload, block=True: True
    return parts, server


def _measure(conn, streams: int, poses: int, settle: bool, env: dict[str, str]) -> None:
    """In a spawned process: time ``poses`` poses of ``streams`` streams through poll_once."""
    import sys

    assert "numpy" not in sys.modules, "numpy must load after the variant's environment is set"
    os.environ.update(env)
    configure_thread_pools()
    from poselift.gc_policy import settle_heap

    parts, server = in_memory_server(streams, DRAIN)
    try:
        for _ in range(max(4, 2 * streams // DRAIN + 2)):  # every stream started, kernels warm
            server.poll_once()
        if settle:
            settle_heap()
        start_published = server.publisher.published
        wall, cpu = time.perf_counter(), time.process_time()
        while server.publisher.published - start_published < poses:
            server.poll_once()
        n = server.publisher.published - start_published
        conn.send({"us_per_pose_cpu": (time.process_time() - cpu) / n * 1e6,
                   "us_per_pose_wall": (time.perf_counter() - wall) / n * 1e6, "poses": n,
                   "kernel": parts.engine.lifter.backend, **_model_share(parts.engine, streams)})
    finally:
        server.close()


def _model_share(engine, streams: int, steps: int = 50) -> dict[str, float]:
    """CPU time per stream of the two networks' batched step alone, every slot stepped at once
    (the whole-batch path), after the loop: the part of a pose that no loop code can remove."""
    import torch

    x = torch.zeros(streams, 17, 2)
    out = {}
    for name, lifter in (("pose_step_us_per_stream", engine.lifter), ("trajectory_step_us_per_stream", engine.traj)):
        if lifter is None:
            continue
        lifter.step(x)
        cpu = time.process_time()
        for _ in range(steps):
            lifter.step(x)
        out[name] = (time.process_time() - cpu) / steps / streams * 1e6
    return out


def _run_variant(streams: int, poses: int, variant: dict[str, Any]) -> dict[str, Any]:
    return in_spawned_process(_measure, streams, poses, variant["settle"], variant["env"])


def server_cpu(stream_counts: tuple[int, ...] = (8, 64, 256), repeats: int = 3, poses: int = 20_000) -> dict:
    """``{"streams_S": {variant: {"us_per_pose_cpu": median, "runs": [...]}}, "load_average": ...}``."""
    import statistics

    from tqdm import tqdm

    from .hardware import cpu_model

    runs: dict[int, dict[str, list[dict]]] = {s: {v: [] for v in VARIANTS} for s in stream_counts}
    jobs = [(s, v) for _ in range(repeats) for s in stream_counts for v in VARIANTS]
    load_before = os.getloadavg()[0]
    for s, v in tqdm(jobs, desc="server CPU", unit="run"):
        runs[s][v].append(_run_variant(s, poses, VARIANTS[v]))
    out: dict[str, Any] = {"hardware": f"{cpu_model()}, {os.cpu_count()} cores",
                           "load_average": [load_before, os.getloadavg()[0]], "drain": DRAIN, "poses": poses}
    for s in stream_counts:
        out[f"streams_{s}"] = {v: {"us_per_pose_cpu": statistics.median(r["us_per_pose_cpu"] for r in rs),
                                   "us_per_pose_wall": statistics.median(r["us_per_pose_wall"] for r in rs),
                                   **{k: statistics.median(r[k] for r in rs) for k in MODEL_KEYS if k in rs[0]},
                                   "kernel": rs[0]["kernel"], "runs": rs}
                               for v, rs in runs[s].items()}
    return out


def markdown(r: dict) -> str:
    lines = [f"# serve's loop without sockets: CPU time per pose (median of runs, µs)", "",
             f"{r['hardware']}; load average {r['load_average'][0]:.1f} at start, {r['load_average'][1]:.1f} at end; "
             f"drains of {r['drain']} messages, {r['poses']} poses per run.", "",
             "| streams | " + " | ".join(VARIANTS) + " |", "|---:|" + "---:|" * len(VARIANTS)]
    for key, by_variant in r.items():
        if key.startswith("streams_"):
            lines.append(f"| {key.split('_')[1]} | "
                         + " | ".join(f"{by_variant[v]['us_per_pose_cpu']:.0f} ({by_variant[v]['kernel']})"
                                      for v in VARIANTS) + " |")
    shipped = [(key.split("_")[1], by_variant["shipped"]) for key, by_variant in r.items() if key.startswith("streams_")]
    if all(MODEL_KEYS[0] in b for _, b in shipped):
        lines += ["", "Of that, as shipped, the two networks' batched step alone (CPU µs per stream, every slot "
                      "stepped at once, after the loop):", "",
                  "| streams | pose network | trajectory network | the rest of a pose (loop, decode, intake, roots, "
                  "motion stage, encoding) |", "|---:|---:|---:|---:|"]
        for streams, b in shipped:
            model = b[MODEL_KEYS[0]] + b.get(MODEL_KEYS[1], 0.0)
            lines.append(f"| {streams} | {b[MODEL_KEYS[0]]:.0f} | {b.get(MODEL_KEYS[1], 0.0):.0f} | "
                         f"{b['us_per_pose_cpu'] - model:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m poselift.bench.server_cpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", default="8,64,256")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--poses", type=int, default=20_000)
    p.add_argument("--json")
    p.add_argument("--md")
    args = p.parse_args(argv)
    r = server_cpu(tuple(int(x) for x in args.streams.split(",")), args.repeats, args.poses)
    write_results(r, markdown(r), args.json, args.md)
    return r


if __name__ == "__main__":
    main()
