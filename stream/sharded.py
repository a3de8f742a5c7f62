"""``poselift serve --workers N``: stream-sharded server processes behind one pair of sockets.

One server process spends about 160 us of Python per pose and so tops out near one core
(docs/protocol.md, Batching). Here a **front** (the process that runs ``serve``) binds the
user's two addresses exactly as one server does (same socket types, HWMs, loopback rule,
CURVE), and N **workers** (spawned processes) each run an unchanged
:class:`stream.service.PoseServer`, with the engine and stages that ``serve`` builds
(:func:`stream.apps.serve_parts`), on private ``ipc://`` sockets in a temporary folder that
only this user can open.

* Input: the front reads each message's ``stream`` (:func:`stream_id`, which skips the
  other values without decoding them) and forwards the message unchanged to the worker that
  owns that stream (:func:`owner`: crc32 of the name mod N), so all frames and the ``end``
  of a stream reach one worker, in the order they arrived. A message whose stream cannot be
  read goes to worker 0, whose server rejects it exactly as one server would.
* Output: one PULL (lossless) or SUB (live) socket in the front collects the workers' PUSH
  or PUB output, and libzmq's proxy (C, no GIL) forwards it to the user's socket. A
  stream's messages all travel on one worker -> front connection, which keeps their order.
* Lossless backpressure: a consumer that stops reading fills the user's PUSH, the proxy
  stops reading, the workers' PUSH fill and their servers wait (and stop reading), the
  front's queue to that worker fills, the front stops reading its input, and the senders
  block. Every queue on the way has a high-water mark, so memory stays bounded.
* Status: each worker sends its own status messages (resets, rejections, ends, skeletons,
  counters every second); their ``counters`` carry ``worker`` (its index) and ``workers`` (N).
* Lifecycle: stopping the front stops every worker cleanly (each flushes its pending poses
  and sends its final ``counters`` status, which the front forwards within the linger).
  A worker that dies stops the whole server with one line (:class:`WorkerError`); workers
  notice a front that died (their pipe closes) and stop.

This module imports neither torch nor the server at import time. The front sets the thread
pools' environment (:func:`poselift.thread_pools.configure_thread_pools`) before it spawns the
workers, which inherit it: numpy is loaded in a worker before its own code runs.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from multiprocessing.connection import Connection, wait
from typing import Any

import msgpack
import numpy as np
import zmq

from poselift.errors import PoseliftError, UserError
from poselift.gc_policy import settle_heap
from poselift.thread_pools import configure_thread_pools

from .transport import MAXMSGSIZE, bind, curve_server

START_TIMEOUT_S = 300.0   # a worker imports torch and loads the model: seconds, minutes on a crowded machine
STOP_TIMEOUT_S = 15.0     # each worker's flush plus its PUSH linger (10 s) before it is killed
ROUTE_HWM = 1000          # messages queued front -> worker (the worker's RCVHWM adds to it) before backpressure
MAX_ROUTE = 512           # input messages routed per poll before the front looks at its workers again
WORKER_CHECK_S = 0.1      # how often the front checks that every worker is alive
SUBSCRIBE_TIMEOUT_S = 10.0  # live mode: wait for each worker's input SUB to subscribe before routing


class WorkerError(PoseliftError, RuntimeError):
    """A worker failed to start or died; the message is one line (the CLI prints it)."""


# ----------------------------------------------------------------------------- routing
def stream_id(data: bytes | memoryview) -> str | None:
    """The ``stream`` of one input message, or None when it cannot be read (not msgpack, not
    a map, no string ``stream``, ...). Only the map's keys are decoded; every other value is
    skipped in C. A key given twice counts with its last value, as the server's decoder
    reads it, so a crafted message cannot be routed by one stream id and lifted as another."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=MAXMSGSIZE)
    stream = None
    try:
        unpacker.feed(data)
        for _ in range(unpacker.read_map_header()):
            if unpacker.unpack() == "stream":
                stream = unpacker.unpack()
            else:
                unpacker.skip()
    except Exception:  # truncated, not a map, too deep, bad UTF-8...: the worker says which
        return None
    return stream if isinstance(stream, str) else None


def owner(stream: str | None, workers: int) -> int:
    """The index of the worker that lifts ``stream``: crc32 of its UTF-8 name mod ``workers``
    (stable across runs and processes, unlike Python's salted ``hash``); 0 for None."""
    if stream is None:
        return 0
    return zlib.crc32(stream.encode("utf-8")) % workers


# ------------------------------------------------------------------------------ worker
@dataclass
class WorkerSpec:
    """What a worker process needs (pickled to it by the spawn context)."""

    index: int
    workers: int
    input: str      # private addresses its PoseServer binds (ipc://)
    publish: str
    lossless: bool
    single_frame: bool
    status_interval_s: float
    options: dict[str, Any] = field(default_factory=dict)  # stream.apps.serve_parts keyword arguments


@cache
def _worker_server_type() -> type:
    """PoseServer whose counters name the worker (imported late: torch loads with it)."""
    from .service import PoseServer

    class WorkerServer(PoseServer):
        """One shard: a PoseServer whose status counters also carry ``worker`` and ``workers``."""

        def __init__(self, *args: Any, index: int, workers: int, **kwargs: Any) -> None:
            self.index, self.workers = index, workers
            super().__init__(*args, **kwargs)

        def counters(self) -> dict[str, Any]:
            return {**super().counters(), "worker": self.index, "workers": self.workers}

    return WorkerServer


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, (PoseliftError, ValueError, OSError)) else f"{type(exc).__name__}: {text}"


def _worker_main(conn: Connection, spec: WorkerSpec) -> None:
    """Entry point of a spawned worker: build serve's engine and stages, bind the private
    sockets, answer ``("ready", description)`` or ``("error", one line)``, serve until the
    front says stop (or is gone), then answer ``("done", counters, latencies)``."""
    configure_thread_pools()  # before torch loads (numpy's pool already follows the front's setting)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the front decides
    try:
        from .apps import describe_model, serve_parts

        parts = serve_parts(**spec.options)
        server = _worker_server_type()(
            parts.engine, spec.input, spec.publish, lossless=spec.lossless, single_frame=spec.single_frame,
            status_interval_s=spec.status_interval_s, stages=parts.stages, index=spec.index, workers=spec.workers)
    except BaseException as exc:  # reported by the front as one line
        conn.send(("error", _one_line(exc)))
        return
    conn.send(("ready", describe_model(parts.ckpt, parts.engine)))
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    front_gone = threading.Event()
    threading.Thread(target=_watch_front, args=(conn, server.stop, front_gone), daemon=True).start()
    counters: dict[str, Any] = {}
    settle_heap()  # as a single serve does before its loop (poselift/gc_policy.py)
    try:
        counters = server.serve_forever()
    finally:
        if front_gone.is_set():  # nobody will take the tail: do not linger on it
            server.publisher.sock.setsockopt(zmq.LINGER, 0)
        server.close()
        if parts.vmc_sender is not None:
            parts.vmc_sender.close()
    try:
        conn.send(("done", counters, np.asarray(server.latencies_ms, dtype=np.float32)))
    except OSError:
        pass


def _watch_front(conn: Connection, stop: Callable[[], None], front_gone: threading.Event) -> None:
    """Worker thread: call ``stop`` when the front says so, or when it is gone (its end of the
    pipe closed, or this process was re-parented), so that no worker outlives its front."""
    parent = os.getppid()
    while True:
        try:
            if conn.poll(0.5):
                conn.recv()
                break
        except (EOFError, OSError):
            front_gone.set()
            break
        if os.getppid() != parent:
            front_gone.set()
            break
    stop()


# ------------------------------------------------------------------------------- front
def _bind_input(context: zmq.Context, addr: str, *, lossless: bool, allow_remote: bool,
                curve_secret_key: str | None, curve_clients: str | None) -> tuple[zmq.Socket, Any]:
    """The user's input socket with the options PoseServer gives its own (docs/protocol.md,
    Socket options), and the ZAP authenticator when ``curve_clients`` lists the allowed peers."""
    from .service import RCVHWM

    if curve_clients and not curve_secret_key:
        raise ValueError("--curve-clients needs --curve-secret-key")
    if curve_clients and not os.path.isdir(curve_clients):
        raise ValueError(f"{curve_clients}: not a folder of client public keys (*.key)")
    sock = context.socket(zmq.PULL if lossless else zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, RCVHWM)
    sock.setsockopt(zmq.MAXMSGSIZE, MAXMSGSIZE)
    sock.setsockopt(zmq.LINGER, 0)
    if not lossless:
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    auth = None
    try:
        if curve_secret_key:
            curve_server(sock, curve_secret_key)
            if curve_clients:
                from zmq.auth.thread import ThreadAuthenticator

                auth = ThreadAuthenticator(context)
                auth.start()
                auth.configure_curve(domain="*", location=curve_clients)
        bind(sock, addr, allow_remote=allow_remote)
    except BaseException:
        sock.close()
        if auth is not None:
            auth.stop()
        raise
    return sock, auth


SUMMED_COUNTERS = ("received", "accepted", "published", "rejected_total", "resets", "ended", "undelivered", "streams")


def merge_counters(per_worker: Sequence[dict[str, Any]], workers: int | None = None) -> dict[str, Any]:
    """The workers' final counters added up (``rejected`` by reason; every count of
    ``PoseServer.counters`` is there, 0 when no worker reported), with ``workers`` (N, by
    default the number of reports) and each worker's own under ``per_worker``."""
    total: dict[str, Any] = dict.fromkeys(SUMMED_COUNTERS, 0)
    rejected: Counter[str] = Counter()
    for c in per_worker:
        rejected.update(c.get("rejected") or {})
        for key, value in c.items():
            if key not in ("worker", "workers", "rejected") and isinstance(value, (int, float)):
                total[key] = total.get(key, 0) + value
    return {**total, "rejected": dict(rejected), "workers": len(per_worker) if workers is None else workers,
            "per_worker": list(per_worker)}


class ShardedServer:
    """``poselift serve --workers N``: binds both addresses, starts N worker processes and
    waits until each is ready (or raises :class:`WorkerError` with one line), then routes.

    Use it like :class:`stream.service.PoseServer`: :meth:`serve_forever` (or
    :meth:`poll_once` in a loop, then :meth:`shutdown`), :meth:`stop` from another thread or
    a signal handler, and :meth:`close`. ``options``: keyword arguments of
    :func:`stream.apps.serve_parts` (model, device, stages...), the same for every worker.
    """

    def __init__(self, workers: int, input_addr: str, publish_addr: str, *, options: dict[str, Any],
                 lossless: bool = False, single_frame: bool = False, status_interval_s: float = 1.0,
                 allow_remote: bool = False, curve_secret_key: str | None = None,
                 curve_clients: str | None = None, start_timeout_s: float = START_TIMEOUT_S) -> None:
        if workers < 1:
            raise ValueError("--workers must be at least 1")
        self.workers = workers
        self.lossless = lossless
        self.context = zmq.Context()
        self._dir = tempfile.mkdtemp(prefix="poselift-shards-")  # mode 0700: only this user reaches the workers
        self._procs: list[Any] = []
        self._conns: list[Connection] = []
        self._routes: list[zmq.Socket] = []
        self._collector: zmq.Socket | None = None
        self._proxy: threading.Thread | None = None
        self._control: zmq.Socket | None = None
        self._auth = None
        self.inp: zmq.Socket | None = None
        self.publisher = None
        self._stop = threading.Event()
        self._stopping = False
        self._deadline: float | None = None
        self._next_check = 0.0
        self._linger_until = float("inf")  # set when the tail is forwarded (shutdown)
        self.model = ""
        self.final: list[dict[str, Any]] = []
        self.latencies_ms = np.zeros(0, np.float32)
        try:
            self.inp, self._auth = _bind_input(self.context, input_addr, lossless=lossless, allow_remote=allow_remote,
                                               curve_secret_key=curve_secret_key, curve_clients=curve_clients)
            from .service import PosePublisher

            self.publisher = PosePublisher(publish_addr, lossless=lossless, single_frame=single_frame,
                                           context=self.context, allow_remote=allow_remote,
                                           curve_secret_key=curve_secret_key)
            self.input_endpoint = self.inp.getsockopt_string(zmq.LAST_ENDPOINT)
            self.publish_endpoint = self.publisher.endpoint
            specs = [WorkerSpec(i, workers, f"ipc://{self._dir}/in{i}", f"ipc://{self._dir}/out{i}", lossless,
                                single_frame, status_interval_s, dict(options)) for i in range(workers)]
            self._start_workers(specs, start_timeout_s)
            self._connect(specs)
        except BaseException:
            self.close()
            raise

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    # ----------------------------------------------------------------------- start
    def _start_workers(self, specs: list[WorkerSpec], timeout_s: float) -> None:
        configure_thread_pools()  # the workers inherit it (their numpy loads before their first line)
        ctx = mp.get_context("spawn")
        for spec in specs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child, spec), name=f"poselift-worker-{spec.index}",
                               daemon=True)
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)
        waiting = dict(enumerate(self._conns))
        deadline = time.monotonic() + timeout_s
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(f"worker(s) {sorted(waiting)} not ready within {timeout_s:.0f} s")
            ready = wait([*waiting.values(), *(self._procs[i].sentinel for i in waiting)], timeout=left)
            for i, conn in list(waiting.items()):
                if conn in ready:
                    try:
                        answer = conn.recv()
                    except EOFError:
                        answer = None
                    if not answer or answer[0] != "ready":
                        raise WorkerError(f"worker {i} failed to start: {answer[1] if answer else self._exit(i)}")
                    self.model = answer[1]
                    del waiting[i]
                elif self._procs[i].sentinel in ready:
                    raise WorkerError(f"worker {i} failed to start: {self._exit(i)}")

    def _exit(self, index: int) -> str:
        """How worker ``index`` ended, once it has."""
        self._procs[index].join(5)
        return f"exited with code {self._procs[index].exitcode}"

    def _connect(self, specs: list[WorkerSpec]) -> None:
        """Route sockets to each worker's input, one collector of their output, the proxy."""
        collector = self._collector = self.context.socket(zmq.PULL if self.lossless else zmq.SUB)
        collector.setsockopt(zmq.RCVHWM, ROUTE_HWM)
        collector.setsockopt(zmq.LINGER, 0)
        if not self.lossless:
            collector.setsockopt(zmq.SUBSCRIBE, b"")
        for spec in specs:
            collector.connect(spec.publish)
        for spec in specs:
            # XPUB, not PUB: it tells when the worker's SUB has subscribed (before that, PUB drops)
            sock = self.context.socket(zmq.PUSH if self.lossless else zmq.XPUB)
            sock.setsockopt(zmq.SNDHWM, ROUTE_HWM)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(spec.input)
            self._routes.append(sock)
        if not self.lossless:
            for i, sock in enumerate(self._routes):
                if not sock.poll(int(SUBSCRIBE_TIMEOUT_S * 1000), zmq.POLLIN):
                    raise WorkerError(f"worker {i} did not subscribe to its input within {SUBSCRIBE_TIMEOUT_S:.0f} s")
                sock.recv()
        address = f"inproc://poselift-shards-control-{id(self)}"
        self._control = self.context.socket(zmq.PAIR)
        self._control.bind(address)
        peer = self.context.socket(zmq.PAIR)
        peer.connect(address)
        self._proxy = threading.Thread(target=self._run_proxy, args=(peer,), name="poselift-shards-output",
                                       daemon=True)
        self._proxy.start()

    def _run_proxy(self, control: zmq.Socket) -> None:
        """Workers' output -> the user's socket, in libzmq (no GIL), until TERMINATE."""
        try:
            zmq.proxy_steerable(self._collector, self.publisher.sock, None, control)
        except zmq.ContextTerminated:
            pass
        finally:
            control.close()

    # ------------------------------------------------------------------------- run
    def poll_once(self, timeout_ms: int = 100) -> int:
        """Wait up to ``timeout_ms`` for input, route what is waiting (up to ``MAX_ROUTE``
        messages) to the workers that own it; raise :class:`WorkerError` if one died.
        Returns the number of messages routed."""
        n = 0
        if self.inp.poll(timeout_ms, zmq.POLLIN):
            recv, workers = self.inp.recv_multipart, self.workers
            while n < MAX_ROUTE:
                try:
                    parts = recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._forward(owner(stream_id(parts[-1]), workers), parts)
                n += 1
        if time.monotonic() >= self._next_check:
            self._check_workers()
        return n

    def _forward(self, index: int, parts: list[bytes]) -> None:
        """One message to worker ``index``. Live: XPUB never waits (it drops at its
        high-water mark, as a lagging server's SUB input does). Lossless: wait for room,
        which keeps the front from reading more input (backpressure to the senders), until
        :meth:`stop` (then the message is left unread, as in one server's input queue)."""
        sock = self._routes[index]
        if not self.lossless:
            sock.send_multipart(parts, zmq.NOBLOCK)
            return
        while True:
            try:
                sock.send_multipart(parts, zmq.NOBLOCK)
                return
            except zmq.Again:
                if self._should_stop():
                    return
                self._check_workers()
                sock.poll(100, zmq.POLLOUT)

    def _check_workers(self) -> None:
        self._next_check = time.monotonic() + WORKER_CHECK_S
        for i, proc in enumerate(self._procs):
            if proc.exitcode is not None:
                raise WorkerError(f"worker {i} (pid {proc.pid}) exited with code {proc.exitcode}; "
                                  f"the server stops (the streams it lifted lost their state)")

    def serve_forever(self, *, duration_s: float | None = None) -> dict[str, Any]:
        """Route until :meth:`stop` or ``duration_s``, then :meth:`shutdown`; returns the
        merged final counters. A worker that dies: the others are shut down cleanly, then
        :class:`WorkerError` is raised."""
        self._deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            while not self._should_stop():
                self.poll_once(50)
        except WorkerError:
            self.shutdown()
            raise
        return self.shutdown()

    def _should_stop(self) -> bool:
        return self._stop.is_set() or (self._deadline is not None and time.monotonic() >= self._deadline)

    def stop(self) -> None:
        """Ask :meth:`serve_forever` (running in another thread, or interrupted by a signal
        handler) to stop routing and shut down."""
        self._stop.set()

    # ------------------------------------------------------------------------ stop
    def shutdown(self, timeout_s: float = STOP_TIMEOUT_S) -> dict[str, Any]:
        """Stop every worker (each lifts what it has read, flushes its pending poses and
        sends its final ``counters`` status), forward what they sent to the consumer, and
        return the merged counters (:func:`merge_counters`). Workers still running after
        ``timeout_s`` are killed."""
        if self._stopping:
            return merge_counters(self.final, self.workers)
        self._stopping = True
        self._stop.set()
        for conn in self._conns:
            try:
                conn.send("stop")
            except OSError:
                pass
        self.final, latencies = self._collect_final(time.monotonic() + timeout_s)
        self.latencies_ms = np.concatenate(latencies) if latencies else np.zeros(0, np.float32)
        self._kill_workers(join_s=1.0)
        self._stop_proxy()
        self._forward_tail()
        return merge_counters(self.final, self.workers)

    def _collect_final(self, deadline: float) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
        """Each worker's ``("done", counters, latencies)``, until it exits or ``deadline``."""
        final: dict[int, dict[str, Any]] = {}
        latencies: list[np.ndarray] = []
        waiting = dict(enumerate(self._conns))  # a worker that already exited reads as EOF at once
        while waiting and (left := deadline - time.monotonic()) > 0:
            for conn in wait(list(waiting.values()), timeout=left):
                i = self._conns.index(conn)
                try:
                    answer = conn.recv()
                except (EOFError, OSError):
                    answer = None
                if answer and answer[0] == "done":
                    final[i] = answer[1]
                    latencies.append(answer[2])
                del waiting[i]
        return [final[i] for i in sorted(final)], latencies

    def _kill_workers(self, join_s: float) -> None:
        for proc in self._procs:
            proc.join(join_s)
            if proc.is_alive():
                proc.kill()
                proc.join(5)

    def _stop_proxy(self) -> None:
        if self._proxy is not None and self._proxy.is_alive():
            self._control.send(b"TERMINATE")
            self._proxy.join(5)

    def _forward_tail(self) -> None:
        """What reached the front after the proxy stopped, to the consumer: lossless waits
        for room up to the publisher's linger; live drops when full, as PUB does."""
        from .service import PUSH_LINGER_MS

        if self._collector is None or (self._proxy is not None and self._proxy.is_alive()):
            return
        out = self.publisher.sock
        deadline = self._linger_until = time.monotonic() + PUSH_LINGER_MS / 1000
        while self._collector.poll(0):
            parts = self._collector.recv_multipart()
            while True:
                try:
                    out.send_multipart(parts, zmq.NOBLOCK)
                    break
                except zmq.Again:
                    if not self.lossless or time.monotonic() >= deadline:
                        break
                    out.poll(100, zmq.POLLOUT)

    def close(self, *, linger: bool = True) -> None:
        """Kill workers that are still running, close every socket (the user's output
        lingers as one server's does, for the tail, unless not ``linger``), remove the
        private folder."""
        self._kill_workers(join_s=0)
        if self._proxy is not None and self._proxy.is_alive():
            self._stop_proxy()
        if self._proxy is None or not self._proxy.is_alive():
            for sock in (*self._routes, self._collector, self._control, self.inp):
                if sock is not None:
                    sock.close()
            if self.publisher is not None:
                self.publisher.sock.setsockopt(zmq.LINGER, self._linger_left_ms(linger))
                self.publisher.close()
            if self._auth is not None:
                self._auth.stop()
                self._auth = None
            self.context.term()  # waits for the user's output to deliver its tail (its LINGER)
        for conn in self._conns:
            conn.close()
        self._conns = []
        shutil.rmtree(self._dir, ignore_errors=True)

    def _linger_left_ms(self, linger: bool) -> int:
        """The user's output socket lingers on its tail at most once in all, as one
        server's does: the wait in :meth:`_forward_tail` counts against it."""
        full = self.publisher.sock.getsockopt(zmq.LINGER)
        if not linger:
            return 0
        if self._linger_until == float("inf"):
            return full
        return min(full, int(max(0.0, self._linger_until - time.monotonic()) * 1000))

    def __enter__(self) -> "ShardedServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --------------------------------------------------------------------------------- CLI
def run_sharded(workers: int, *, input: str, publish: str, lossless: bool = False, single_frame: bool = False,
                max_frames: int | None = None, duration: float | None = None,
                curve_secret_key: str | None = None, curve_clients: str | None = None,
                options: dict[str, Any]) -> dict[str, Any]:
    """``poselift serve --workers N`` (N > 1): as :func:`stream.apps.run_serve`, with the
    lifting spread over N processes; prints the same lines and returns the merged counters."""
    from .apps import print_serve_summary, stop_on_signals

    if workers < 1:
        raise UserError("--workers must be at least 1")
    if max_frames is not None:
        raise UserError("--frames counts the poses of one process; with --workers, stop with --duration or a signal")
    if options.get("vmc"):
        raise UserError("--vmc drives one avatar from one process; use it without --workers")
    try:
        server = ShardedServer(workers, input, publish, options=options, lossless=lossless,
                               single_frame=single_frame, allow_remote=options.get("allow_remote", False),
                               curve_secret_key=curve_secret_key, curve_clients=curve_clients)
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from None
    kind = ("PULL", "PUSH") if lossless else ("SUB", "PUB")
    print(f"model: {server.model}")
    print(f"workers: {workers} processes (pids {', '.join(map(str, server.pids))}), streams sharded by id")
    print(f"input  {kind[0]} bound at {server.input_endpoint} (senders connect here)")
    print(f"output {kind[1]} bound at {server.publish_endpoint} (consumers connect here)", flush=True)
    forced = False
    settle_heap()  # the front decodes no poses, but holds torch's start-up objects too
    with stop_on_signals(server.stop) as stopped_by:
        try:
            counters = server.serve_forever(duration_s=duration)
        except KeyboardInterrupt:  # a second signal: do not wait for the workers
            forced = True
            counters = merge_counters(server.final, workers)
        finally:
            server.close(linger=not forced)
    return print_serve_summary(counters, server.latencies_ms.tolist(), stopped_by)
