"""Both ends around ``poselift serve``: a 2D keypoint sender and a 3D pose receiver.

They *connect* (the server binds). ``lossless=True`` picks PUSH/PULL, else PUB/SUB.
``poselift listen`` is :class:`PoseReceiver` plus printing.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterator

import zmq

from .protocol import POSE_TOPIC_PREFIX, STATUS_TOPIC, decode_message, encode_end, encode_input
from .transport import curve_client, normalize_address


class KeypointSender:
    """Sends v1 2D messages to a server's input address (PUSH when lossless, else PUB)."""

    def __init__(self, addr: str, *, lossless: bool = False, context: zmq.Context | None = None,
                 curve_server_key: str | None = None, curve_secret_key: str | None = None,
                 linger_ms: int | None = None) -> None:
        """``linger_ms``: how long :meth:`close` waits to deliver queued frames (default 5 s
        lossless, 1 s otherwise; -1 waits for ever)."""
        self.context = context or zmq.Context.instance()
        self.sock = self.context.socket(zmq.PUSH if lossless else zmq.PUB)
        if curve_server_key:  # the server runs with --curve-secret-key: encrypt, authenticate
            curve_client(self.sock, curve_server_key, curve_secret_key)
        self.sock.setsockopt(zmq.LINGER, linger_ms if linger_ms is not None else (5000 if lossless else 1000))
        self.sock.setsockopt(zmq.SNDHWM, 1000)
        self.sock.connect(normalize_address(addr))

    def send(self, stream: str, frame: int, kp: Any, *, width: int, height: int,
             layout: str = "h36m17", t: float | None = None, focal_px: float | None = None) -> None:
        """``kp`` (J, 2) or (J, 3) pixels (NaN rows are sent as absent joints); ``focal_px``:
        the camera's focal length in pixels, when known (for the root)."""
        self.sock.send(encode_input(stream, frame, kp, width=width, height=height, layout=layout, t=t,
                                    focal_px=focal_px))

    def end(self, stream: str) -> None:
        """End ``stream``: the server flushes its pending poses (a symmetric model's last
        frames), frees its slot and answers with a status message whose event is ``end``.
        Frame numbers may start again from 0 afterwards."""
        self.sock.send(encode_end(stream))

    def send_raw(self, data: bytes) -> None:
        self.sock.send(data)

    def close(self) -> None:
        self.sock.close()


class PoseReceiver:
    """Receives pose3d and status messages (PULL when lossless, else SUB).

    ``streams``: only these stream ids (SUB: subscribes to ``pose3d.<id>`` only).
    ``latest_only``: keep just the newest pose (drains what is queued on each receive).

    From the per-stream ``seq`` numbers it counts :attr:`dropped` (poses the publisher sent
    that never arrived: PUB drops for a slow consumer; with ``latest_only`` also the ones
    skipped on purpose; per stream in :attr:`dropped_by_stream`) and
    :attr:`publisher_restarts` (``seq`` went back).
    """

    def __init__(self, addr: str, *, lossless: bool = False, streams: list[str] | None = None,
                 status: bool = True, latest_only: bool = False, context: zmq.Context | None = None,
                 curve_server_key: str | None = None, curve_secret_key: str | None = None) -> None:
        self.context = context or zmq.Context.instance()
        self.sock = self.context.socket(zmq.PULL if lossless else zmq.SUB)
        if curve_server_key:
            curve_client(self.sock, curve_server_key, curve_secret_key)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.latest_only = latest_only
        self.streams = set(streams) if streams else None
        self.status = status
        self.dropped = 0
        self.dropped_by_stream: Counter[str] = Counter()
        self.publisher_restarts = 0
        self._last_seq: dict[str, int] = {}
        if not lossless:
            for s in streams or [""]:
                self.sock.setsockopt(zmq.SUBSCRIBE, (POSE_TOPIC_PREFIX + s).encode() if s else POSE_TOPIC_PREFIX.encode())
            if status:
                self.sock.setsockopt(zmq.SUBSCRIBE, STATUS_TOPIC.encode())
        self.sock.connect(normalize_address(addr))

    def recv(self, timeout_ms: int | None = None) -> dict[str, Any] | None:
        """Next message as a dict (None on timeout)."""
        while True:
            if not self.sock.poll(timeout_ms if timeout_ms is not None else -1, zmq.POLLIN):
                return None
            parts = self.sock.recv_multipart()
            if self.latest_only:
                while True:
                    try:
                        parts = self.sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
            msg = decode_message(parts[-1])
            self._count_seq(msg)
            if msg.get("type") == "status" and not self.status:
                continue
            if msg.get("type") == "pose3d" and self.streams is not None and msg.get("stream") not in self.streams:
                continue
            return msg

    def _count_seq(self, msg: dict[str, Any]) -> None:
        seq, stream = msg.get("seq"), msg.get("stream")
        if msg.get("type") != "pose3d" or not isinstance(seq, int) or not isinstance(stream, str):
            return
        last = self._last_seq.get(stream)
        if last is not None:
            if seq > last + 1:
                self.dropped += seq - last - 1
                self.dropped_by_stream[stream] += seq - last - 1
            elif seq <= last:
                self.publisher_restarts += 1
        self._last_seq[stream] = seq

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            msg = self.recv()
            if msg is not None:
                yield msg

    def close(self) -> None:
        self.sock.close()
