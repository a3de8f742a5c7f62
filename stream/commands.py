"""``poselift demo | webcam | serve | video | listen``: argument parsing only.

Each handler calls the matching function of :mod:`stream.apps`.
"""

from __future__ import annotations

import argparse

from poselift.model.precision import PRECISIONS, precision_names

from . import DEFAULT_INPUT, DEFAULT_PUBLISH, ROOT_MODES

_FMT = argparse.RawDescriptionHelpFormatter


def _model_options(p: argparse.ArgumentParser, precision: bool = True) -> None:
    p.add_argument("--checkpoint", default=None, metavar="CKPT",
                   help="model checkpoint (default: the shipped causal model, model/weights/causal.pt)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the model runs (auto: CUDA when available)")
    if precision:
        p.add_argument("--precision", choices=precision_names(), default="fp32",
                       help="numeric precision of the model (default fp32): "
                            + "; ".join(f"{p.name}: {p.description}" for p in PRECISIONS.values()))
        p.add_argument("--threads", type=int, default=1, metavar="N",
                       help="torch CPU threads (default 1: lowest per-frame latency for streaming)")


def _lifting_options(p: argparse.ArgumentParser) -> None:
    """How poses are lifted, the same on demo, webcam, serve and video: the model's look-ahead,
    flip averaging, the root and the optional smoothing."""
    p.add_argument("--lookahead", type=int, default=None, metavar="F",
                   help="use the shipped model that sees F future frames (live latency F frames): 0 causal, "
                        "121 full-context (smoothest), others as 'poselift info' lists (default: 0 live, 121 for video)")
    p.add_argument("--flip-tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average every pose with the pose of the mirror image (test-time flip augmentation: "
                        "lower error and jitter, one more network pass; default: on for video and webcam, off for "
                        "serve and demo)")
    p.add_argument("--root", choices=ROOT_MODES, default="blend",
                   help="how the root (the pelvis in the camera frame) is placed: blend (default) the pose fitted "
                        "to the 2D with the trajectory network; fit the fitted pose alone, which skips the "
                        "trajectory network (faster, the root about 2 %% less accurate)")
    p.add_argument("--smooth", action="store_true",
                   help="causal One-Euro filter on the output joints (less jitter, a little lag; off by default)")
    p.add_argument("--smooth-min-cutoff", type=float, default=1.0, metavar="HZ",
                   help="One-Euro cut-off at rest, Hz (default 1.0; lower: smoother, more lag)")
    p.add_argument("--smooth-beta", type=float, default=0.5, metavar="B",
                   help="One-Euro speed coefficient (default 0.5; higher: less lag in fast motion, more jitter)")


def _lifting_kwargs(a: argparse.Namespace) -> dict:
    return dict(lookahead=a.lookahead, smooth=a.smooth, smooth_min_cutoff=a.smooth_min_cutoff,
                smooth_beta=a.smooth_beta, flip_tta=a.flip_tta, root=a.root)


def _allow_remote_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-remote", action="store_true",
                   help="allow binding a non-loopback address (e.g. tcp://0.0.0.0:5556); the protocol is neither "
                        "authenticated nor encrypted, see docs/protocol.md, Security")


def _verbose_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="show MediaPipe's and TFLite's own log lines (W0000 ... warnings; silenced by default)")


def _motion_options(p: argparse.ArgumentParser, vmc: bool = True) -> None:
    p.add_argument("--raw", action="store_true",
                   help="publish/write the model's own joints: no body estimate, no rotations (default: every "
                        "pose is made consistent with the stream's body, see README, Motion)")
    if vmc:
        p.add_argument("--vmc", nargs="?", const="127.0.0.1:39539", default=None, metavar="HOST:PORT",
                       help="also send the motion over VMC (OSC/UDP) to this receiver (alone: 127.0.0.1:39539, "
                            "the VMC default; another host needs --allow-remote)")


def _fov_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fov", type=float, default=None, metavar="DEGREES",
                   help="the camera's horizontal field of view, for the root's distance (default 60, the middle "
                        "of the usual webcam range; a 70-degree camera read as 60 puts the person 21 %% too far)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="replay the bundled 2D clip through the causal model, publish and render it",
        description="Replay the bundled recorded 2D clip (CMU mocap seen by a virtual camera) through the "
                    "streaming causal model, publish the 3D poses on ZeroMQ, write an animation (2D input "
                    "beside the 3D skeleton) and print per-frame latency p50/p99, FPS and MPJPE. "
                    "Needs no camera and no network peer.",
        epilog="examples:\n  poselift demo\n  poselift demo --frames 120 --out demo.mp4\n"
               "  poselift demo --realtime &  poselift listen tcp://127.0.0.1:5556",
        formatter_class=_FMT)
    p.add_argument("--clip", default=None, help="recorded clip npz (default: stream/assets/demo_clip.npz)")
    p.add_argument("--out", default="poselift_demo.gif",
                   help="animation file, .gif or .mp4 (.mp4 needs ffmpeg; default poselift_demo.gif)")
    p.add_argument("--no-render", action="store_true", help="skip writing the animation")
    p.add_argument("--frames", type=int, default=None, metavar="N", help="replay only the first N frames")
    p.add_argument("--render-frames", type=int, default=90, metavar="N",
                   help="draw at most N frames (evenly subsampled; default 90)")
    p.add_argument("--publish", default="tcp://127.0.0.1:5556", metavar="ADDR",
                   help="PUB address to bind (default tcp://127.0.0.1:5556; a free port if busy)")
    p.add_argument("--realtime", action="store_true", help="pace the replay at the clip's frame rate")
    _allow_remote_option(p)
    _motion_options(p)
    _model_options(p)
    _lifting_options(p)
    p.set_defaults(func=lambda a: _call("run_demo",
        clip=a.clip, checkpoint=a.checkpoint, out=None if a.no_render else a.out, publish=a.publish,
        frames=a.frames, render_frames=a.render_frames, device=a.device, precision=a.precision,
        realtime=a.realtime, threads=a.threads, allow_remote=a.allow_remote, raw=a.raw, vmc=a.vmc, **_lifting_kwargs(a)))

    p = subparsers.add_parser(
        "webcam", help="live 3D from a camera or video file (MediaPipe 2D + streaming lifter)",
        description="Read a camera (or a video file), detect 2D keypoints with MediaPipe Pose, lift them to "
                    "3D frame by frame, show a window with the 2D overlay and a 3D view, and optionally "
                    "publish the poses on ZeroMQ.",
        epilog="examples:\n  poselift webcam --camera 0 --publish tcp://127.0.0.1:5556\n"
               "  poselift webcam --video clip.mp4 --no-window",
        formatter_class=_FMT)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", type=int, default=0, metavar="N", help="camera index (default 0)")
    src.add_argument("--video", default=None, metavar="FILE", help="read this video file instead of a camera")
    p.add_argument("--publish", default=None, metavar="ADDR", help="also publish poses on this PUB address")
    p.add_argument("--no-window", action="store_true", help="run headless (no display)")
    p.add_argument("--frames", type=int, default=None, metavar="N", help="stop after N frames")
    p.add_argument("--stream", default="cam0", help="stream id used in the published messages (default cam0)")
    _allow_remote_option(p)
    _verbose_option(p)
    _motion_options(p)
    _fov_option(p)
    _model_options(p)
    _lifting_options(p)
    p.set_defaults(func=lambda a: _call("run_webcam",
        camera=a.camera, video=a.video, checkpoint=a.checkpoint, publish=a.publish, window=not a.no_window,
        device=a.device, precision=a.precision, max_frames=a.frames, stream=a.stream, threads=a.threads,
        allow_remote=a.allow_remote, verbose=a.verbose, raw=a.raw, vmc=a.vmc, fov=a.fov, **_lifting_kwargs(a)))

    p = subparsers.add_parser(
        "serve", help="turn a ZeroMQ 2D keypoint feed into 3D poses",
        description="Bind an input socket for 2D keypoint messages (wire protocol v1, docs/protocol.md) and an "
                    "output socket for 3D poses. Default: input SUB, output PUB (live, drops for slow "
                    "consumers). --lossless: input PULL, output PUSH (never drops; exactly one pose per "
                    "accepted frame). Addresses bind to 127.0.0.1 unless given otherwise.",
        epilog=f"examples:\n  poselift serve\n  poselift serve --input {DEFAULT_INPUT} --publish {DEFAULT_PUBLISH} --lossless\n"
               f"  poselift serve --lossless --workers 2   # two lifting processes, one pair of addresses\n"
               f"  poselift listen {DEFAULT_PUBLISH}",
        formatter_class=_FMT)
    p.add_argument("--input", default=DEFAULT_INPUT, metavar="ADDR", help=f"2D input address to bind (default {DEFAULT_INPUT})")
    p.add_argument("--publish", default=DEFAULT_PUBLISH, metavar="ADDR",
                   help=f"3D output address to bind (default {DEFAULT_PUBLISH})")
    p.add_argument("--lossless", action="store_true", help="PULL/PUSH instead of SUB/PUB: nothing is dropped")
    p.add_argument("--single-frame", action="store_true",
                   help="send each output as one frame (no topic frame), for consumers using ZMQ_CONFLATE")
    p.add_argument("--max-streams", type=int, default=16, help="stream slots (default 16)")
    p.add_argument("--frames", type=int, default=None, metavar="N", help="stop after publishing N poses")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="lift in N stream-sharded processes behind the same two addresses (default 1: one "
                        "process); helps when one process is CPU-bound: one worker per free core "
                        "(docs/protocol.md, Sharded mode)")
    _allow_remote_option(p)
    p.add_argument("--curve-secret-key", default=None, metavar="FILE",
                   help="encrypt and authenticate with ZeroMQ CURVE: this server's NAME.key_secret from "
                        "'poselift keygen'; peers need its NAME.key")
    p.add_argument("--curve-clients", default=None, metavar="DIR",
                   help="with --curve-secret-key: only clients whose public key (*.key) is in DIR may connect")
    _motion_options(p)
    _model_options(p)
    _lifting_options(p)
    p.set_defaults(func=lambda a: _call("run_serve",
        input=a.input, publish=a.publish, checkpoint=a.checkpoint, lossless=a.lossless, device=a.device,
        precision=a.precision, max_streams=a.max_streams, single_frame=a.single_frame, max_frames=a.frames,
        duration=a.duration, threads=a.threads, allow_remote=a.allow_remote,
        curve_secret_key=a.curve_secret_key, curve_clients=a.curve_clients, raw=a.raw, vmc=a.vmc, workers=a.workers, **_lifting_kwargs(a)))

    p = subparsers.add_parser(
        "video", help="lift a whole video offline to an npz (and optionally render it)",
        description="Detect 2D keypoints in every frame with MediaPipe, then lift them through the same gap "
                    "filling and lifting loop as webcam/serve (flushed at the end, so a symmetric model "
                    "completes every frame) and save poses3d (T,17,3) metres, keypoints2d (T,17,2) pixels, "
                    "frames and valid flags.",
        epilog="examples:\n  poselift video clip.mp4 --out clip_3d.npz --render clip_3d.mp4   # full-context model\n"
               "  poselift video clip.mp4 --out clip_3d.npz --lookahead 0 --smooth   # as live with --smooth",
        formatter_class=_FMT)
    p.add_argument("file", help="video file")
    p.add_argument("--out", required=True, metavar="OUT.npz", help="output npz")
    p.add_argument("--render", default=None, metavar="OUT.mp4", help="also write an animation (.mp4 or .gif)")
    p.add_argument("--model", choices=("causal", "full"), default=None,
                   help="shipped model to use when --checkpoint is not given (causal = --lookahead 0, "
                        "full = --lookahead 121, the full-context model; default full)")
    p.add_argument("--frames", type=int, default=None, metavar="N", help="only the first N frames")
    p.add_argument("--bvh", default=None, metavar="OUT.bvh", help="also write the motion as a BVH file")
    p.add_argument("--allow-remote", action="store_true", help="allow --vmc to a host that is not loopback")
    _verbose_option(p)
    _motion_options(p)
    _fov_option(p)
    _model_options(p)
    _lifting_options(p)
    p.set_defaults(func=lambda a: _call("run_video",
        a.file, out=a.out, render=a.render, model=a.model, checkpoint=a.checkpoint, device=a.device,
        max_frames=a.frames, precision=a.precision, threads=a.threads, verbose=a.verbose, raw=a.raw,
        bvh=a.bvh, vmc=a.vmc, allow_remote=a.allow_remote, fov=a.fov, **_lifting_kwargs(a)))

    p = subparsers.add_parser(
        "listen", help="example consumer: print the 3D poses a publisher sends",
        description="Connect to a poselift publisher (serve, webcam --publish, demo) and print each pose "
                    "and status message. The source is short on purpose: see stream/client.py and "
                    "docs/protocol.md for writing your own consumer.",
        epilog=f"examples:\n  poselift listen {DEFAULT_PUBLISH}\n  poselift listen {DEFAULT_PUBLISH} --lossless --count 100\n"
               f"  poselift listen {DEFAULT_PUBLISH} --stream cam0 --latest --json",
        formatter_class=_FMT)
    p.add_argument("addr", nargs="?", default=DEFAULT_PUBLISH, help=f"address to connect to (default {DEFAULT_PUBLISH})")
    p.add_argument("--lossless", action="store_true", help="PULL (for serve --lossless) instead of SUB")
    p.add_argument("--stream", action="append", default=None, help="only this stream id (repeatable)")
    p.add_argument("--count", type=int, default=None, metavar="N", help="stop after N poses")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="stop after S seconds")
    p.add_argument("--json", action="store_true", help="print each message as one JSON line")
    p.add_argument("--latest", action="store_true", help="skip queued poses and show only the newest")
    p.add_argument("--no-status", action="store_true", help="do not print status messages")
    p.add_argument("--plot", action="store_true", help="also show the newest pose in a live 3D plot (needs a display)")
    p.add_argument("--bvh", default=None, metavar="OUT.bvh",
                   help="record the motion to BVH: OUT-<stream>.bvh per stream, or OUT.bvh with one --stream")
    p.add_argument("--curve-server-key", default=None, metavar="FILE",
                   help="the server uses CURVE: its public key file (NAME.key)")
    p.add_argument("--curve-secret-key", default=None, metavar="FILE",
                   help="with --curve-server-key: this consumer's key pair (NAME.key_secret), needed when the "
                        "server lists allowed clients")
    p.set_defaults(func=lambda a: _call("run_listen",
        a.addr, lossless=a.lossless, streams=a.stream, count=a.count, timeout=a.timeout, as_json=a.json,
        latest=a.latest, status=not a.no_status, plot=a.plot, curve_server_key=a.curve_server_key,
        curve_secret_key=a.curve_secret_key, bvh=a.bvh))

    p = subparsers.add_parser(
        "keygen", help="make a ZeroMQ CURVE key pair for serve/listen/senders beyond localhost",
        description="Write NAME.key (public: give it to peers) and NAME.key_secret (private) into DIR. "
                    "The server uses its NAME.key_secret with serve --curve-secret-key; clients use the "
                    "server's NAME.key with --curve-server-key. See docs/protocol.md, Security.",
        epilog="example:\n  poselift keygen keys --name server\n  poselift keygen keys/clients --name robot1",
        formatter_class=_FMT)
    p.add_argument("dir", help="folder to write the key files into")
    p.add_argument("--name", default="poselift", help="file name stem (default poselift)")
    p.set_defaults(func=lambda a: _call("run_keygen", a.dir, stem=a.name))


def _call(name: str, *args, **kwargs) -> int:
    """Import stream.apps only when a command runs (keeps ``poselift --help`` fast)."""
    from . import apps

    getattr(apps, name)(*args, **kwargs)
    return 0
