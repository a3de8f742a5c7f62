"""Addresses, binding and CURVE: the socket plumbing shared by the server and the clients.

Nothing here knows about poses. :mod:`stream.service` (the server) and
:mod:`stream.client` (senders and consumers) both import it; the client no longer
imports the server.
"""

from __future__ import annotations

import ipaddress
import os

import zmq

from .protocol import MAX_MESSAGE_BYTES

from . import DEFAULT_INPUT, DEFAULT_PUBLISH  # noqa: F401  (bound by the server, 127.0.0.1)

# The server's input socket refuses (libzmq drops the message and the sending peer's
# connection, which reconnects by itself) anything larger than the protocol allows, so
# RCVHWM queued messages can hold at most RCVHWM x 64 KiB. One constant for both.
MAXMSGSIZE = MAX_MESSAGE_BYTES


def normalize_address(addr: str | int, default_host: str = "127.0.0.1") -> str:
    """``5555`` or ``"5555"`` -> ``tcp://127.0.0.1:5555``; ``host:port`` -> ``tcp://host:port``;
    full ZeroMQ endpoints (``tcp://``, ``ipc://``, ``inproc://``) are kept as given."""
    a = str(addr).strip()
    if "://" in a:
        return a
    if a.isdigit() or a == "*":
        return f"tcp://{default_host}:{a}"
    if ":" in a:
        return f"tcp://{a}"
    raise ValueError(f"not a ZeroMQ address: {addr!r} (expected e.g. tcp://127.0.0.1:5556 or 5556)")


def is_loopback(endpoint: str) -> bool:
    """True when binding ``endpoint`` exposes nothing beyond this machine: ``ipc://``,
    ``inproc://``, or ``tcp://`` on a loopback address (127.0.0.0/8, ::1, localhost)."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name, a host name: may be reachable from outside
        return False


def bind(sock: zmq.Socket, addr: str, *, allow_remote: bool = False) -> str:
    """Bind and return the resolved endpoint (a ``*`` port becomes the chosen port).

    A non-loopback address raises ValueError unless ``allow_remote``: the protocol has no
    authentication or encryption (docs/protocol.md, Security)."""
    addr = normalize_address(addr)
    if not allow_remote and not is_loopback(addr):
        raise ValueError(f"refusing to bind {addr}: not a loopback address, and poselift traffic is neither "
                         f"authenticated nor encrypted; pass --allow-remote to expose it beyond this machine "
                         f"(see docs/protocol.md, Security)")
    try:
        sock.bind(addr)
    except zmq.ZMQError as exc:
        raise OSError(f"cannot bind {addr}: {exc.strerror} (is another poselift running? "
                      f"use another port, or tcp://127.0.0.1:* for a free one)") from None
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


# ------------------------------------------------------------------ CURVE (optional)
def generate_keys(folder: str, name: str) -> tuple[str, str]:
    """Write a CURVE key pair (ZeroMQ certificate files): ``NAME.key`` (public, give it to
    peers) and ``NAME.key_secret`` (keep it private). Returns both paths."""
    import zmq.auth

    os.makedirs(folder, exist_ok=True)
    public, secret = zmq.auth.create_certificates(folder, name)
    os.chmod(secret, 0o600)
    return public, secret


def _load_key(path: str, *, secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a CURVE key file ({exc}); make one with 'poselift keygen'") from None
    if secret and secret_key is None:
        raise ValueError(f"{path}: holds only a public key; give the NAME.key_secret file")
    return public, secret_key


def curve_server(sock: zmq.Socket, secret_key_file: str) -> None:
    """Make ``sock`` a CURVE server: traffic is encrypted and peers must know its public key."""
    public, secret = _load_key(secret_key_file, secret=True)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True


def curve_client(sock: zmq.Socket, server_key_file: str, secret_key_file: str | None = None) -> None:
    """Make ``sock`` a CURVE client of the server whose public key is in ``server_key_file``;
    ``secret_key_file``: this client's key pair (needed when the server lists allowed clients),
    else a throw-away pair is made."""
    server_public, _ = _load_key(server_key_file, secret=False)
    if secret_key_file:
        public, secret = _load_key(secret_key_file, secret=True)
    else:
        public, secret = zmq.curve_keypair()
    sock.curve_serverkey = server_public
    sock.curve_publickey = public
    sock.curve_secretkey = secret
