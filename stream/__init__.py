"""Live streaming: sources (camera/video, ZeroMQ, replay), gap filling, the batched lifting
loop, wire protocol v1 (docs/protocol.md), rendering and the streaming CLI commands."""

# Default addresses (both bound by the server; 127.0.0.1 so nothing is exposed by default).
# Defined in stream/transport.py; kept here for ``from poselift.stream import DEFAULT_INPUT``
# without importing zmq.
DEFAULT_INPUT = "tcp://127.0.0.1:5555"
DEFAULT_PUBLISH = "tcp://127.0.0.1:5556"

# How ``--root`` places the root (stream.apps.make_engine; README, "Many cameras"): ``blend`` the
# pose fitted to the 2D with the checkpoint's trajectory network (the default), ``fit`` the
# fitted pose alone, which skips the trajectory network's step for a root about 2 % less accurate.
ROOT_MODES = ("blend", "fit")
