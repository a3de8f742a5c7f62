"""Helpers for the reliability tests: a real ``poselift serve`` process, RSS from /proc,
lossless receiving, and a generator of random and malformed input messages.

Everything talks over tcp://127.0.0.1 only; every loop is bounded in count and time.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zmq

from poselift.stream.protocol import MAX_MESSAGE_BYTES, ProtocolError, decode_input

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK_ANY = "tcp://127.0.0.1:*"


# ------------------------------------------------------------------------------ memory
def rss_kib(pid: int | None = None) -> int:
    """Resident set size in KiB, read from /proc (no psutil needed)."""
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("VmRSS not found in /proc/<pid>/status")


# ------------------------------------------------------------------------- serve process
@dataclass
class ServeProcess:
    """``python -m poselift serve`` as a child process, bound to random loopback ports."""

    proc: subprocess.Popen
    input: str
    publish: str
    out_lines: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, checkpoint: Path, *args: str, timeout: float = 60.0) -> "ServeProcess":
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "poselift", "serve", "--input", LOOPBACK_ANY, "--publish", LOOPBACK_ANY,
             "--checkpoint", str(checkpoint), "--device", "cpu", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        lines: list[str] = []
        endpoints: dict[str, str] = {}
        t_end = time.monotonic() + timeout
        while len(endpoints) < 2:
            if time.monotonic() > t_end or proc.poll() is not None:
                proc.kill()
                out, err = proc.communicate(timeout=10)
                raise RuntimeError(f"serve did not start: {''.join(lines)}{out}\n{err}")
            line = proc.stdout.readline()
            lines.append(line)
            m = re.match(r"(input|output)\s+\w+ bound at (\S+)", line)
            if m:
                endpoints[m.group(1)] = m.group(2)
        return cls(proc, endpoints["input"], endpoints["output"], lines)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> tuple[int, str, str]:
        """Send ``sig`` and wait; returns (exit code, stdout, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"serve did not exit within {timeout} s of {sig!r}:\n{out}\n{err}") from None
        return self.proc.returncode, "".join(self.out_lines) + out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


def final_counters(stdout: str) -> dict[str, Any]:
    """The ``final counters: {...}`` line that ``serve`` prints when it stops."""
    for line in stdout.splitlines():
        if line.startswith("final counters: "):
            return json.loads(line[len("final counters: "):])
    raise AssertionError(f"no final counters line in serve's output:\n{stdout}")


# ------------------------------------------------------------------------------ sockets
def push(addr: str, ctx: zmq.Context | None = None, hwm: int = 1000) -> zmq.Socket:
    s = (ctx or zmq.Context.instance()).socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, 5000)
    s.setsockopt(zmq.SNDHWM, hwm)
    s.connect(addr)
    return s


def pull(addr: str, ctx: zmq.Context | None = None, hwm: int = 1000) -> zmq.Socket:
    s = (ctx or zmq.Context.instance()).socket(zmq.PULL)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVHWM, hwm)
    s.connect(addr)
    return s


def recv_all(sock: zmq.Socket, *, poses: int, timeout: float = 60.0, rejected: int = 0,
             out: dict[str, list] | None = None) -> dict[str, list]:
    """Read [topic, map] messages into ``out`` ("pose3d" and "status" lists) until
    ``poses`` pose3d messages and ``rejected`` status "rejected" events arrived, or ``timeout``."""
    out = out if out is not None else {"pose3d": [], "status": []}
    n_rej = sum(1 for m in out["status"] if m.get("event") == "rejected")
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end and (len(out["pose3d"]) < poses or n_rej < rejected):
        if not sock.poll(200):
            continue
        msg = msgpack.unpackb(sock.recv_multipart()[-1], raw=False)
        out[msg["type"]].append(msg)
        n_rej += msg.get("event") == "rejected"
    return out


def drain(sock: zmq.Socket, out: dict[str, list], seconds: float = 0.3) -> dict[str, list]:
    """Read whatever arrives within ``seconds`` into ``out``."""
    t_end = time.monotonic() + seconds
    while (left := t_end - time.monotonic()) > 0:
        if sock.poll(max(1, int(left * 1000))):
            msg = msgpack.unpackb(sock.recv_multipart()[-1], raw=False)
            out[msg["type"]].append(msg)
    return out


# ------------------------------------------------------------------- message generator
def good_map(stream: str = "fz0", frame: int = 0, layout: str = "h36m17", n: int | None = None,
             rng: np.random.Generator | None = None) -> dict[str, Any]:
    """A valid v1 input map with plausible pixel keypoints."""
    rng = rng or np.random.default_rng(0)
    joints = {"h36m17": 17, "coco17": 17, "mediapipe33": 33}[layout] if n is None else n
    kp = (rng.uniform(100, 500, size=(joints, 2))).tolist()
    return {"v": 1, "stream": stream, "frame": frame, "t": float(frame) / 30.0, "layout": layout,
            "width": 640, "height": 480, "kp": kp}


def pick(rng: np.random.Generator, seq):
    """One element of ``seq`` as the Python object itself (no numpy conversion)."""
    return seq[int(rng.integers(0, len(seq)))]


def _random_value(rng: np.random.Generator, depth: int = 0) -> Any:
    k = int(rng.integers(0, 11 if depth < 3 else 8))
    return [
        lambda: None,
        lambda: bool(rng.integers(0, 2)),
        lambda: int(rng.integers(-2**63, 2**63 - 1, dtype=np.int64)),
        lambda: pick(rng, [0.0, -1.0, 1e308, -1e308, 5e-324, math.nan, math.inf, -math.inf, 640.5]),
        lambda: "".join(chr(int(c)) for c in rng.integers(32, 0x2FF, size=int(rng.integers(0, 12)))),
        lambda: rng.integers(0, 256, size=int(rng.integers(0, 16)), dtype=np.uint8).tobytes(),
        lambda: 2**64 - 1,
        lambda: -2**63,
        lambda: [_random_value(rng, depth + 1) for _ in range(int(rng.integers(0, 20)))],
        lambda: {str(_random_value(rng, 3))[:8]: _random_value(rng, depth + 1) for _ in range(int(rng.integers(0, 5)))},
        lambda: [[float(rng.normal(300, 100)), float(rng.normal(300, 100))] for _ in range(int(rng.integers(0, 40)))],
    ][k]()


FIELDS = ("v", "stream", "frame", "t", "layout", "width", "height", "kp")
CATEGORIES = (
    "random_bytes", "msgpack_not_map", "random_map", "wrong_type", "missing_field", "huge_array",
    "non_finite", "frame_number", "unknown_layout", "extra_fields", "truncated", "trailing_bytes",
    "bad_version", "wrong_joint_count", "oversized", "deep_nesting", "huge_coordinate", "valid_odd",
)


def fuzz_message(rng: np.random.Generator, streams: tuple[str, ...] = ("fz0", "fz1", "fz2")) -> tuple[str, bytes]:
    """One random or malformed input message: (category, bytes). Messages that happen to
    be valid are moved onto one of ``streams`` so they never exhaust the server's slots."""
    cat = pick(rng, CATEGORIES)
    s = pick(rng, streams)
    layout = pick(rng, ["h36m17", "coco17", "mediapipe33"])
    m = good_map(s, int(rng.integers(0, 10_000)), layout, rng=rng)
    if cat == "random_bytes":
        data = rng.integers(0, 256, size=int(rng.integers(0, 400)), dtype=np.uint8).tobytes()
    elif cat == "msgpack_not_map":
        data = msgpack.packb(pick(rng, [None, 1, "x", [1, 2], b"\x00", 1.5, True, [good_map()]]), use_bin_type=True)
    elif cat == "random_map":
        data = msgpack.packb({str(k): _random_value(rng) for k in [pick(rng, FIELDS + ("x", "type")) for _ in range(4)]},
                             use_bin_type=True)
    elif cat == "wrong_type":
        m[str(rng.choice(FIELDS))] = _random_value(rng)
        data = msgpack.packb(m, use_bin_type=True)
    elif cat == "missing_field":
        for k in rng.choice(FIELDS, int(rng.integers(1, 4)), replace=False):
            m.pop(str(k))
        data = msgpack.packb(m, use_bin_type=True)
    elif cat == "huge_array":
        n = pick(rng, [1_000, 5_000, 20_000, 50_000])  # over 3,400 pairs the message is over 64 KiB (MAXMSGSIZE)
        m["kp"] = [[1.0, 2.0]] * n
        data = msgpack.packb(m, use_bin_type=True)
    elif cat == "non_finite":
        bad = pick(rng, [math.nan, math.inf, -math.inf])
        where = int(rng.integers(0, 4))
        if where == 0:
            m["t"] = bad
        elif where == 1:
            m["kp"][int(rng.integers(0, len(m["kp"])))][int(rng.integers(0, 2))] = bad
        elif where == 2:
            m["kp"] = [p + [bad] for p in m["kp"]]
        else:
            m["kp"][0] = [math.inf, math.inf]
        data = msgpack.packb(m, use_bin_type=True)
    elif cat == "frame_number":
        m["frame"] = pick(rng, [-1, -2**63, 2**63 - 1, 2**64 - 1, 0, 2**31])
        data = msgpack.packb(m, use_bin_type=True)
    elif cat == "unknown_layout":
        m["layout"] = pick(rng, ["openpose25", "H36M17", "", "coco", "h36m17 ", "mediapipe"])
        data = msgpack.packb(m, use_bin_type=True)
    elif cat == "extra_fields":
        for i in range(int(rng.integers(1, 6))):
            m[f"extra{i}"] = _random_value(rng)
        data = msgpack.packb(m, use_bin_type=True)
    elif cat == "truncated":
        full = msgpack.packb(m, use_bin_type=True)
        data = full[: int(rng.integers(0, len(full)))]
    elif cat == "trailing_bytes":
        data = msgpack.packb(m, use_bin_type=True) + rng.integers(0, 256, size=int(rng.integers(1, 8)),
                                                                  dtype=np.uint8).tobytes()
    elif cat == "bad_version":
        m["v"] = pick(rng, [0, 2, -1, 1.0, "1", None, True, 2**64 - 1])
        if rng.random() < 0.2:
            m.pop("v")
        data = msgpack.packb(m, use_bin_type=True)
    elif cat == "wrong_joint_count":
        m["kp"] = m["kp"][: int(rng.integers(0, len(m["kp"])))] if rng.random() < 0.5 else m["kp"] + [[1.0, 1.0]]
        data = msgpack.packb(m, use_bin_type=True)
    elif cat == "oversized":
        m["pad"] = b"x" * int(rng.integers(MAX_MESSAGE_BYTES, 4 * MAX_MESSAGE_BYTES))
        data = msgpack.packb(m, use_bin_type=True)
    elif cat == "deep_nesting":
        depth = int(rng.integers(100, 60_000))
        data = b"\x91" * depth + b"\xc0"
    elif cat == "huge_coordinate":
        m["kp"][int(rng.integers(0, len(m["kp"])))] = [pick(rng, [1e7, -1e30, 1e300]), 1.0]
        data = msgpack.packb(m, use_bin_type=True)
    else:  # valid_odd: valid but unusual (nil joints, confidences out of range, few joints)
        for j in rng.choice(len(m["kp"]), int(rng.integers(0, len(m["kp"]) + 1)), replace=False):
            m["kp"][int(j)] = None if rng.random() < 0.5 else m["kp"][int(j)] + [float(rng.uniform(-2, 3))]
        data = msgpack.packb(m, use_bin_type=True)
    return cat, data


def expected_reason(data: bytes) -> str | None:
    """What the v1 decoder says about ``data``: a reject reason, or None when accepted."""
    try:
        decode_input(data)
    except ProtocolError as exc:
        return exc.reason
    return None
