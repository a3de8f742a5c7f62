"""The service's load curve (issue 16): ``poselift serve --lossless`` as shipped (the causal
model with its trajectory model, the frame-rate check and the motion stage) in its own
process, a paced sender and a receiver in this one, over loopback.

For each stream count: the highest **sustained lossless rate** (every frame comes back, 0
lost, and the last pose arrives within ``MAX_LAG_S`` of the last send, so the backlog did
not grow), then the send-to-receive latency p50/p99 at 50 % and 90 % of that rate. Each
input message carries its send time in ``t``, which the pose echoes; the receiver reads it
back from the raw bytes (no decode), so the bench process spends little per message.

Also: the light-load point of the issue (8 streams x 30 fps) and, for one stream count,
how the drain bound (``PoseServer(max_drain=...)``, the most messages read before a model
step) trades latency against throughput.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import struct
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from poselift.thread_pools import configure_thread_pools

MAX_LAG_S = 0.25  # the last pose must come back this soon after the last send
_T_KEY = b"\xa1t\xcb"  # msgpack: the key "t", then a float 64 marker


def _server_main(conn, max_streams: int, threads: int, max_drain: int | None, as_serve: bool, precision: str,
                 device: str) -> None:
    from poselift.gc_policy import settle_heap

    configure_thread_pools()  # a fresh (spawned) interpreter: before torch loads, as the CLI does
    try:
        from poselift.stream.service import PoseServer

        if as_serve:  # what `poselift serve` runs: the causal model, its trajectory model, serve's stages
            from poselift.stream.apps import serve_parts

            # the paced senders are not 30 fps cameras: the frame-rate check's line is noise here
            parts = serve_parts(device=device, precision=precision, max_streams=max_streams, threads=threads,
                                warn=lambda _line: None)
            engine, stages, ckpt = parts.engine, parts.stages, parts.ckpt
            label = f"{Path(ckpt.path).name}, trajectory model {'yes' if ckpt.trajectory_model is not None else 'no'}"
        else:  # the pose model alone, no stages (bench_zmq's figures)
            import torch

            from poselift.stream.engine import LiftEngine

            from .service import _default_model

            torch.set_num_threads(threads)
            model, label = _default_model()
            engine = LiftEngine(model, max_streams=max_streams, device=device, precision=precision)
            stages = []
        drain = {} if max_drain is None else {"max_drain": max_drain}  # None: the server's default
        server = PoseServer(engine, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", lossless=True, status_interval_s=0,
                            stages=stages, **drain)
    except Exception as exc:  # reported to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}", ""))
        return
    conn.send((server.input_endpoint, server.publish_endpoint, label))
    settle_heap()  # as `poselift serve` does before its loop
    profile_to = os.environ.get("POSELIFT_PROFILE_SERVER")  # a path: cProfile the serve loop into it
    profiler = None
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        while not conn.poll():
            server.poll_once(20)
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(f"{profile_to}.{os.getpid()}")
        server.close()


def _sharded_main(conn, workers: int, max_streams: int, threads: int, precision: str, device: str) -> None:
    """``serve --lossless --workers N`` (stream/sharded.py): the front here, N workers spawned
    by it, each with what ``poselift serve`` builds (:func:`poselift.stream.apps.serve_parts`)."""
    from poselift.gc_policy import settle_heap

    configure_thread_pools()  # inherited by the workers, which also set it before torch loads
    try:
        from poselift.stream.sharded import ShardedServer

        server = ShardedServer(workers, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", lossless=True, status_interval_s=0,
                               options=dict(device=device, precision=precision, max_streams=max_streams,
                                            threads=threads))
    except Exception as exc:  # reported to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}", ""))
        return
    conn.send((server.input_endpoint, server.publish_endpoint, f"{server.model}; {workers} workers"))
    settle_heap()  # as run_sharded does (its workers settle their own heaps)
    try:
        while not conn.poll():
            server.poll_once(20)
    finally:
        server.close(linger=False)  # the bench has read every pose: end the workers at once


class ServeProcess:
    """``serve --lossless`` in a spawned process: as ``poselift serve`` runs it (``as_serve``:
    the shipped causal model with its trajectory model and serve's stages), or the pose
    model alone without stages (the full bench's ZeroMQ section)."""

    def __init__(self, max_streams: int, threads: int = 1, max_drain: int | None = None, *, as_serve: bool = True,
                 precision: str = "fp32", device: str = "cpu", workers: int = 1) -> None:
        """``workers`` > 1: ``serve --workers N`` (as_serve only; ``max_drain`` is the
        single server's): the front process starts the workers, so it cannot be a daemon."""
        configure_thread_pools()  # inherited by the spawned server, whose numpy loads before its first line
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        if workers > 1:
            if max_drain is not None or not as_serve:
                raise ValueError("workers > 1 measures serve as shipped: no max_drain, as_serve only")
            self.proc = ctx.Process(target=_sharded_main, args=(child, workers, max_streams, threads, precision, device))
        else:
            self.proc = ctx.Process(target=_server_main, daemon=True,
                                    args=(child, max_streams, threads, max_drain, as_serve, precision, device))
        self.proc.start()
        if not self.conn.poll(180):
            self.proc.kill()
            raise RuntimeError("the server process did not start within 180 s")
        self.input, self.publish, self.label = self.conn.recv()
        self.next_frame = 0  # the next frame number each stream sends (run_at_rate)
        if self.input == "error":
            self.proc.join(5)
            raise RuntimeError(f"the server process failed: {self.publish}")

    def close(self) -> None:
        try:
            self.conn.send("stop")
        except OSError:
            pass
        self.proc.join(5)  # nothing is left for PUSH to linger on; a sharded front also ends its workers
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


def messages(n_streams: int, frames: int = 240) -> list[list[bytes]]:
    """Pre-encoded input messages, per stream, ready for :func:`run_at_rate` to stamp."""
    from .service import _encode_all

    return _widen_frames(_encode_all(n_streams, frames, t=0.5))


def run_at_rate(server: ServeProcess, rate: float, n_streams: int, duration_s: float, msgs,
                warmup_s: float = 0.5) -> dict:
    """Send ``rate`` frames/s round robin over ``n_streams`` for ``duration_s``; every pose
    is counted, and its latency (send to receive) kept after ``warmup_s``."""
    import zmq

    ctx = zmq.Context.instance()
    tx = ctx.socket(zmq.PUSH)
    tx.setsockopt(zmq.SNDHWM, 0)  # the sender never blocks: a lagging server shows as lag, not as a slow sender
    tx.setsockopt(zmq.LINGER, 0)
    tx.connect(server.input)
    rx = ctx.socket(zmq.PULL)
    rx.setsockopt(zmq.RCVHWM, 0)
    rx.setsockopt(zmq.LINGER, 0)
    rx.connect(server.publish)
    time.sleep(0.2)
    total = max(1, int(rate * duration_s))
    per_stream = len(msgs[0])
    got = [0]
    stale = [0]  # poses of earlier runs that reached this run's receiver (not counted)
    last_rx = [0.0]
    lat: list[float] = []
    done = threading.Event()
    base = server.next_frame  # frame numbers continue across runs against one server: no resets
    server.next_frame += total // n_streams + 2
    t0 = [time.perf_counter()]  # poses stamped before this run are stale (see receive)

    def receive() -> None:
        clock, unpack = time.perf_counter, struct.unpack_from
        while got[0] < total and not done.is_set():
            if not rx.poll(100):
                continue
            while True:
                try:
                    parts = rx.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                now = clock()
                payload = parts[-1]
                i = payload.find(_T_KEY)
                if i < 0:
                    continue
                sent_at = unpack(">d", payload, i + len(_T_KEY))[0]
                if sent_at < t0[0]:  # a pose of an earlier run, delivered late: not this run's
                    stale[0] += 1
                    continue
                got[0] += 1
                last_rx[0] = now
                if now - t0[0] >= warmup_s:
                    lat.append(now - sent_at)

    th = threading.Thread(target=receive, daemon=True)
    th.start()
    stamp = struct.Struct(">d")
    t0[0] = start = time.perf_counter()
    sent = 0
    try:
        while sent < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            while sent < due:
                s, k = sent % n_streams, sent // n_streams
                m = bytearray(msgs[s][k % per_stream])
                _patch_frame_and_t(m, base + k, stamp, time.perf_counter())
                tx.send(m, copy=True)
                sent += 1
            time.sleep(0.0005)
        t_last_send = time.perf_counter()
        th.join(timeout=max(5.0, duration_s * 2))
    finally:
        done.set()
        th.join(1)
        tx.close()
        rx.close()
    lost = total - got[0]
    lag = last_rx[0] - t_last_send if got[0] else float("inf")
    a = np.array(lat) * 1e3
    return {"rate_fps": rate, "streams": n_streams, "sent": total, "received": got[0], "lost": lost,
            "stale_ignored": stale[0],
            "lag_after_last_send_s": lag, "sustained": lost == 0 and lag <= MAX_LAG_S,
            "p50_ms": float(np.percentile(a, 50)) if a.size else None,
            "p99_ms": float(np.percentile(a, 99)) if a.size else None,
            "max_ms": float(a.max()) if a.size else None, "latency_samples": int(a.size),
            "achieved_fps": got[0] / max(last_rx[0] - start, 1e-9) if got[0] else 0.0}


def _patch_frame_and_t(m: bytearray, frame: int, stamp: struct.Struct, t: float) -> None:
    """Stamp a pre-encoded input message in place: its ``t`` (send time, perf_counter
    seconds) and its ``frame`` (a uint 32 at a fixed width, so that frame numbers keep
    increasing across runs against one server and no run looks like a sender restart)."""
    i = m.index(_T_KEY) + len(_T_KEY)
    stamp.pack_into(m, i, t)
    j = m.index(b"\xa5frame") + 6
    m[j] = 0xCE
    struct.pack_into(">I", m, j + 1, frame)


def _widen_frames(msgs: list[list[bytes]]) -> list[list[bytes]]:
    """Give every message's ``frame`` a uint 32 encoding (5 bytes) so it can be stamped."""
    import msgpack

    out = []
    for stream in msgs:
        row = []
        for m in stream:
            d = msgpack.unpackb(m)
            b = msgpack.packb(d, use_bin_type=True)
            i = b.index(b"\xa5frame") + 6
            n = len(msgpack.packb(d["frame"]))
            row.append(b[:i] + b"\xce" + struct.pack(">I", d["frame"]) + b[i + n:])
        out.append(row)
    return out


def sustained_rate(server: ServeProcess, n_streams: int, msgs, duration_s: float, start: float,
                   ceiling: float = 40000.0, steps: int = 3) -> tuple[float, list[dict]]:
    """The highest rate with 0 lost and no growing backlog: double from ``start`` until a
    run fails, then bisect ``steps`` times between the last pass and the first fail."""
    runs: list[dict] = []
    good, bad = 0.0, None
    rate = start
    while rate <= ceiling:
        r = run_at_rate(server, rate, n_streams, duration_s, msgs)
        runs.append(r)
        if not r["sustained"]:
            bad = rate
            break
        good = rate
        rate *= 2
    if bad is not None:
        for _ in range(steps):
            mid = (good + bad) / 2 if good else bad / 2
            r = run_at_rate(server, mid, n_streams, duration_s, msgs)
            runs.append(r)
            if r["sustained"]:
                good = mid
            else:
                bad = mid
    return good, runs


def load_curve(stream_counts: Sequence[int] = (1, 8, 64, 256), *, duration_s: float = 3.0, threads: int = 1,
               drains: Sequence[int] = (), drain_streams: int = 256, log=print, workers: int = 1) -> dict:
    """The load curve; ``drains``: drain bounds to compare at ``drain_streams`` streams (one
    server process); ``workers``: measure ``serve --workers N`` (stream/sharded.py)."""
    from .hardware import hardware

    if drains and workers > 1:
        raise ValueError("the drain bound is compared for one server process (--workers 1)")
    machine = hardware("cpu")
    machine["torch_threads"] = threads  # the server's (the bench process's own count does not matter)
    mode = "serve --lossless (PUSH/PULL), serve's stages (frame-rate check, motion stage)"
    if workers > 1:
        mode += f", --workers {workers} (a routing front and {workers} worker processes)"
    out: dict = {"hardware": machine, "torch_threads_in_server": threads, "duration_s": duration_s, "workers": workers,
                 "mode": mode, "max_lag_s": MAX_LAG_S, "curve": {}}
    for n in stream_counts:
        msgs = messages(n)
        server = ServeProcess(max(n, 8), threads, workers=workers)
        try:
            out["model"] = server.label
            best, runs = sustained_rate(server, n, msgs, duration_s, start=250.0 if n == 1 else 1000.0)
            row = {"sustained_fps": best, "search": runs}
            for share in (0.5, 0.9):
                row[f"at_{int(share * 100)}pct"] = run_at_rate(server, best * share, n, duration_s, msgs) if best else None
            out["curve"][str(n)] = row
            log(f"[load] {n} streams: sustained {best:,.0f} fps; " + ", ".join(
                f"{k}: p50 {row[k]['p50_ms']:.2f} / p99 {row[k]['p99_ms']:.2f} ms, lost {row[k]['lost']}"
                for k in ("at_50pct", "at_90pct") if row.get(k)))
        finally:
            server.close()
    msgs = messages(8)
    server = ServeProcess(8, threads, workers=workers)
    try:
        out["light_load"] = run_at_rate(server, 240.0, 8, max(duration_s, 5.0), msgs)
        log(f"[load] light load 8 x 30 fps: p50 {out['light_load']['p50_ms']:.3f} / p99 "
            f"{out['light_load']['p99_ms']:.3f} ms, lost {out['light_load']['lost']}")
    finally:
        server.close()
    if drains:
        msgs = messages(drain_streams)
        out["drain"] = {}
        for d in drains:
            server = ServeProcess(drain_streams, threads, max_drain=d)
            try:
                best, runs = sustained_rate(server, drain_streams, msgs, duration_s, start=1000.0, steps=2)
                row = {"sustained_fps": best, "search": runs}
                ref = out["curve"].get(str(drain_streams), {}).get("sustained_fps") or best
                row["at_fixed_rate"] = run_at_rate(server, 0.5 * ref, drain_streams, duration_s, msgs) if ref else None
                out["drain"][str(d)] = row
                log(f"[load] drain bound {d}: sustained {best:,.0f} fps")
            finally:
                server.close()
    out["hardware"]["load_average_1min_at_end"] = os.getloadavg()[0]
    return out


def overload_capacity(stream_counts: Sequence[int] = (64, 256), workers: Sequence[int] = (1, 2), *,
                      rate: float = 12000.0, duration_s: float = 3.0, repeats: int = 2, log=print) -> list[dict]:
    """How many poses per second each ``--workers`` value delivers when offered more than it
    can take (lossless, so nothing is lost: the backlog is lifted at full speed). The values
    are interleaved, run after run, so that a neighbour's load hits them alike; this is less
    noisy than the sustained-rate search of :func:`load_curve`."""
    rows = []
    for _ in range(repeats):
        for n in stream_counts:
            msgs = messages(n)
            for w in workers:
                server = ServeProcess(max(n, 8), workers=w)
                try:
                    run_at_rate(server, rate / 4, n, 1.0, msgs)  # warm-up: every stream past its first frames
                    r = run_at_rate(server, rate, n, duration_s, msgs)
                finally:
                    server.close()
                row = {"streams": n, "workers": w, "offered_fps": rate, "delivered_fps": r["achieved_fps"],
                       "lost": r["lost"], "load_average_1min": os.getloadavg()[0]}
                rows.append(row)
                log(f"[capacity] {n} streams, {w} worker(s): {row['delivered_fps']:,.0f} poses/s, lost {row['lost']}")
    return rows


def markdown(r: dict) -> str:
    from .report import hardware_line

    lines = ["# poselift serve: load curve (CPU, loopback)", "",
             f"Hardware: {hardware_line(r)}.", "",
             f"Server: {r['mode']}; model {r.get('model')}; {r['torch_threads_in_server']} torch thread(s). "
             f"Sustained = 0 lost and the last pose within {r['max_lag_s']} s of the last send; "
             f"runs of {r['duration_s']} s; latency is send to receive (sender and receiver in one process, "
             "the server in another).", "",
             "| streams | sustained lossless fps | p50 / p99 ms at 50 % | lost at 50 % | p50 / p99 ms at 90 % | lost at 90 % |",
             "|---:|---:|---:|---:|---:|---:|"]
    for n, row in r["curve"].items():
        a, b = row.get("at_50pct") or {}, row.get("at_90pct") or {}

        def lat(x):
            return f"{x['p50_ms']:.2f} / {x['p99_ms']:.2f}" if x.get("p50_ms") is not None else "n/a"
        lines.append(f"| {n} | {row['sustained_fps']:,.0f} | {lat(a)} | {a.get('lost', 'n/a')} | {lat(b)} | {b.get('lost', 'n/a')} |")
    light = r.get("light_load")
    if light:
        lines += ["", f"Light load, 8 streams x 30 fps: p50 {light['p50_ms']:.3f} ms, p99 {light['p99_ms']:.3f} ms, "
                      f"max {light['max_ms']:.2f} ms, lost {light['lost']} of {light['sent']}."]
    if r.get("drain"):
        lines += ["", "## Drain bound (most input messages read before a model step)", "",
                  "| max_drain | sustained fps | p50 / p99 ms at a fixed rate |", "|---:|---:|---:|"]
        for d, row in r["drain"].items():
            x = row.get("at_fixed_rate") or {}
            lat = f"{x['p50_ms']:.2f} / {x['p99_ms']:.2f} at {x['rate_fps']:,.0f} fps" if x.get("p50_ms") is not None else "n/a"
            lines.append(f"| {d} | {row['sustained_fps']:,.0f} | {lat} |")
    return "\n".join(lines) + "\n"


def plot(r: dict, path: str | Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import _save, hardware_line

    ns = [int(n) for n in r["curve"]]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ns, [r["curve"][str(n)]["sustained_fps"] for n in ns], marker="o")
    a1.axhline(10000, color="k", linestyle=":", label="goal 10,000 fps")
    a1.set_xscale("log", base=2)
    a1.set_xticks(ns, [str(n) for n in ns])
    a1.set_xlabel("streams")
    a1.set_ylabel("sustained lossless frames/s")
    a1.legend(fontsize=7)
    for key, style in (("at_50pct", "-"), ("at_90pct", "--")):
        for q, marker in (("p50_ms", "o"), ("p99_ms", "s")):
            ys = [(r["curve"][str(n)].get(key) or {}).get(q) for n in ns]
            a2.plot(ns, [np.nan if y is None else y for y in ys], linestyle=style, marker=marker,
                    label=f"{q[:3]} at {key[3:5]} % of the sustained rate")
    a2.set_xscale("log", base=2)
    a2.set_yscale("log")
    a2.set_xticks(ns, [str(n) for n in ns])
    a2.set_xlabel("streams")
    a2.set_ylabel("send-to-receive latency (ms)")
    a2.legend(fontsize=7)
    fig.suptitle(f"poselift serve --lossless, load curve\n{hardware_line(r)}", fontsize=7)
    return _save(fig, Path(path))


def compare_markdown(r: dict) -> str:
    """Several ``--workers`` values side by side, then each one's own report."""
    from .report import hardware_line

    runs = r["by_workers"]
    ws = list(runs)
    first = runs[ws[0]]
    lines = ["# poselift serve: load curve by number of worker processes (CPU, loopback)", ""]
    for w in ws:
        lines.append(f"- {w} worker(s): {hardware_line(runs[w])}.")
    lines += ["", "The sender and the receiver run in the bench process on the same machine, so with N workers "
              "the server has at most the cores that they leave. Each value's runs are measured one after the "
              "other (not interleaved), each with its own load average above.", "",
              "| streams | " + " | ".join(f"{w} worker(s): sustained fps, p50 / p99 ms at 90 %" for w in ws) + " |",
              "|---:|" + "---:|" * len(ws)]
    for n in first["curve"]:
        cells = []
        for w in ws:
            row = runs[w]["curve"].get(n) or {}
            x = row.get("at_90pct") or {}
            lat = f"{x['p50_ms']:.2f} / {x['p99_ms']:.2f}" if x.get("p50_ms") is not None else "n/a"
            cells.append(f"{row.get('sustained_fps', 0):,.0f}, {lat}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("| light load 8 x 30 fps, p50 / p99 ms | " + " | ".join(
        f"{runs[w]['light_load']['p50_ms']:.2f} / {runs[w]['light_load']['p99_ms']:.2f}" for w in ws) + " |")
    for run in r.get("overload_capacity") or []:
        lines += ["", f"## Delivered rate when overloaded: {run['title']}", "",
                  "Each server is offered more than it can take (lossless: the backlog is lifted at full speed, "
                  "nothing is dropped) and the rate of poses coming back is measured; the worker counts run "
                  "alternately (`bench.load.overload_capacity`), so that the neighbours' load hits them alike.", "",
                  "| streams | workers | delivered poses/s, each run | median | load average (1 min) |",
                  "|---:|---:|---:|---:|---:|"]
        keys = sorted({(row["streams"], row["workers"]) for row in run["rows"]})
        for n, w in keys:
            rows = [row for row in run["rows"] if (row["streams"], row["workers"]) == (n, w)]
            rates = [row["delivered_fps"] for row in rows]
            loads = ", ".join(f"{row['load_average_1min']:.1f}" for row in rows)
            lines.append(f"| {n} | {w} | {', '.join(f'{x:,.0f}' for x in rates)} | {float(np.median(rates)):,.0f} | "
                         f"{loads} |")
    if r.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in r["notes"]]
    for w in ws:
        lines += ["", markdown(runs[w]).replace("# poselift serve: load curve", f"## {w} worker(s): load curve", 1)]
    return "\n".join(lines) + "\n"


def compare_plot(r: dict, path: str | Path) -> str:
    """Sustained rate and p99 at 90 % of it against streams, one line per ``--workers`` value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import _save, hardware_line

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for w, run in r["by_workers"].items():
        ns = [int(n) for n in run["curve"]]
        a1.plot(ns, [run["curve"][str(n)]["sustained_fps"] for n in ns], marker="o", label=f"{w} worker(s)")
        p99 = [(run["curve"][str(n)].get("at_90pct") or {}).get("p99_ms") for n in ns]
        a2.plot(ns, [np.nan if y is None else y for y in p99], marker="s", label=f"{w} worker(s): p99 at 90 %")
    a1.axhline(10000, color="k", linestyle=":", label="goal 10,000 fps")
    a1.set_ylabel("sustained lossless frames/s")
    a2.set_yscale("log")
    a2.set_ylabel("send-to-receive latency (ms)")
    ns = [int(n) for n in next(iter(r["by_workers"].values()))["curve"]]
    for ax in (a1, a2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("streams")
        ax.legend(fontsize=7)
    first = next(iter(r["by_workers"].values()))
    fig.suptitle(f"poselift serve --lossless --workers N, load curve\n{hardware_line(first)}", fontsize=7)
    return _save(fig, Path(path))


def main(json_path: str | None, out_dir: str | None, stream_counts: Sequence[int], duration_s: float,
         threads: int, drains: Sequence[int], workers: Sequence[int] = (1,)) -> dict:
    """``poselift bench --load-curve``: run, then write JSON, Markdown and the plot. Several
    ``workers`` values: one curve each, reported side by side."""
    import json
    import sys

    def curve(w: int) -> dict:
        return load_curve(stream_counts, duration_s=duration_s, threads=threads, drains=drains if w == 1 else (),
                          drain_streams=max(stream_counts), log=lambda m: print(f"[workers {w}] {m}", file=sys.stderr,
                                                                                   flush=True), workers=w)

    if len(workers) == 1:
        r = curve(workers[0])
        md, draw = markdown(r), plot
    else:
        r = {"by_workers": {str(w): curve(w) for w in workers}}
        md, draw = compare_markdown(r), compare_plot
    folder = Path(out_dir) if out_dir else (Path(json_path).parent if json_path else None)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(r, indent=2, default=float) + "\n")
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        stem = Path(json_path).stem if json_path else "load_curve"
        (folder / f"{stem}.md").write_text(md)
        draw(r, folder / f"{stem}.png")
    print(md)
    return r
