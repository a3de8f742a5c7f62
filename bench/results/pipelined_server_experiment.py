"""Issue 16 experiment (not shipped): does overlapping decode and encode with the model step in
threads raise serve's lossless rate?

The issue allows "decoding, stepping and encoding may overlap where the GIL allows". torch
releases the GIL inside its matrix products (about half of a pose's CPU at 256 streams), so a
reader thread (receive + ``decode_inputs``) and a writer thread (``send_poses``: encode + send)
could, in principle, run their Python while the main thread's model step runs in C. This
script measures three variants of the same server (serve's model, stages and
``PoseServer``), each in its own spawned process, in turns:

* ``plain``: ``PoseServer.poll_once`` as shipped, one thread;
* ``reader``: a reader thread drains and decodes into a queue of 2 drains; the main thread
  submits, steps and publishes;
* ``reader+writer``: the same, and a writer thread encodes and sends each round's poses from a
  queue of 4 rounds.

For each: whether 8,000 / 9,000 / 10,000 frames/s are sustained (bench.load's criterion),
then the poses per second delivered when overloaded (16,000 frames/s offered for 2 s), at
256 streams over loopback with bench.load's sender and receiver.

``python bench/results/pipelined_server_experiment.py [--repeats 2] [--md OUT]``
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import statistics
import threading
import time

from poselift.bench.isolated import write_results
from poselift.thread_pools import configure_thread_pools

MODES = ("plain", "reader", "reader+writer")


def _server(conn, max_streams: int, mode: str) -> None:
    configure_thread_pools()
    from poselift.gc_policy import settle_heap
    from poselift.stream.apps import serve_parts
    from poselift.stream.protocol import Frame2D, ProtocolError, decode_inputs
    from poselift.stream.service import PoseServer

    parts = serve_parts(max_streams=max_streams, warn=lambda _line: None)
    server = PoseServer(parts.engine, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", lossless=True,
                        status_interval_s=0, stages=parts.stages)
    conn.send((server.input_endpoint, server.publish_endpoint))
    settle_heap()
    if mode == "plain":
        while not conn.poll():
            server.poll_once(20)
        server.close()
        return
    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(maxsize=2)
    rounds: queue.Queue = queue.Queue(maxsize=4)

    def reader() -> None:
        while not stop.is_set():
            datas, times = server._drain(20)
            if datas:
                decoded.put((datas, decode_inputs(datas), times))

    def writer() -> None:
        while (poses := rounds.get()) is not None:
            server.publisher.send_poses(poses)

    threads = [threading.Thread(target=reader, daemon=True)]
    if mode == "reader+writer":
        threads.append(threading.Thread(target=writer, daemon=True))
        server.loop.batch_sink = lambda poses: (rounds.put(poses), [0.0] * len(poses))[1]
    for t in threads:
        t.start()
    while not conn.poll():
        try:
            datas, items, times = decoded.get(timeout=0.02)
        except queue.Empty:
            continue
        for item, t_recv in zip(items, times):
            try:
                if isinstance(item, Exception):
                    raise item
                item.t_recv = t_recv
                server.loop.submit(item)
            except ProtocolError as exc:
                parts.engine.reject(exc.reason, exc.detail)
        server.loop.step()
        parts.engine.take_events()
    stop.set()
    rounds.put(None)
    time.sleep(0.2)
    server.close()


class _Server:
    """What bench.load's run_at_rate needs of a server: its addresses and frame counter."""

    def __init__(self, max_streams: int, mode: str) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_server, args=(child, max_streams, mode), daemon=True)
        self.proc.start()
        self.input, self.publish = self.conn.recv()
        self.next_frame = 0

    def close(self) -> None:
        self.conn.send("stop")
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()


def run(repeats: int = 2, streams: int = 256) -> dict:
    from poselift.bench.load import messages, run_at_rate

    configure_thread_pools()
    msgs = messages(streams)
    out: dict = {m: {"overload_fps": [], "sustained": {r: [] for r in (8000, 9000, 10000)}} for m in MODES}
    for _ in range(repeats):
        for mode in MODES:
            server = _Server(streams, mode)
            try:  # the paced rates first: an overload run's backlog would still be draining after it
                for rate in (8000, 9000, 10000):
                    out[mode]["sustained"][rate].append(run_at_rate(server, rate, streams, 2.0, msgs)["sustained"])
                out[mode]["overload_fps"].append(run_at_rate(server, 16000, streams, 2.0, msgs)["achieved_fps"])
            finally:
                server.close()
    return out


def markdown(r: dict, load: tuple[float, float]) -> str:
    from poselift.bench.hardware import cpu_model

    lines = ["# Threads around serve's loop (issue 16 experiment, not shipped)", "",
             f"{cpu_model()}; 256 streams, lossless, loopback; load average {load[0]:.1f} at start, "
             f"{load[1]:.1f} at end. Runs of each mode alternate.", "",
             "| mode | poses/s delivered at 16,000 offered (runs; median) | sustained 8,000 / 9,000 / 10,000 (per run) |",
             "|---|---:|---|"]
    for mode, m in r.items():
        runs = ", ".join(f"{x:,.0f}" for x in m["overload_fps"])
        sustained = " / ".join("".join("y" if ok else "n" for ok in oks) for oks in m["sustained"].values())
        lines.append(f"| {mode} | {runs}; {statistics.median(m['overload_fps']):,.0f} | {sustained} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import os

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--md")
    args = p.parse_args()
    before = os.getloadavg()[0]
    result = run(args.repeats)
    write_results(result, markdown(result, (before, os.getloadavg()[0])), None, args.md)
