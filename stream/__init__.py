"""Live streaming: sources (camera/video, ZeroMQ, replay), gap filling, the batched lifting
loop, wire protocol v1 (docs/protocol.md), rendering and the streaming CLI commands."""

# Default addresses (both bound by the server; 127.0.0.1 so nothing is exposed by default).
# Defined in stream/transport.py; kept here for ``from poselift.stream import DEFAULT_INPUT``
# without importing zmq.
DEFAULT_INPUT = "tcp://127.0.0.1:5555"
DEFAULT_PUBLISH = "tcp://127.0.0.1:5556"
