"""What each ``poselift`` streaming subcommand does, as importable functions.

``run_demo``, ``run_serve``, ``run_webcam``, ``run_video`` and ``run_listen`` take plain
arguments, print progress, and return a dict of results; :mod:`stream.commands` only
parses the command line. User mistakes raise :class:`poselift.errors.UserError` (one line,
no traceback).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poselift.errors import UserError
from poselift.gc_policy import settle_heap

from . import ROOT_MODES
from .engine import LiftEngine, PoseOut
from .gapfill import GapPolicy
from .loop import PoseLoop, collect

DEFAULT_DEMO_OUT = "poselift_demo.gif"
# --lookahead when none is given (README "Look-ahead or smoothing?", measured on the validation
# split and the three real videos): live commands (demo, webcam, serve) keep the causal model
# (the look-ahead models' small clean-P1 gain comes mostly from their fine-tune; they are no
# better on detector-noise P1, MPJVE or real-video jitter, and each frame costs 33 ms). The
# offline video command uses the full-context model, where latency does not matter: it has
# the lowest MPJVE and real-video jitter (rooftop 0.026, break dance 0.24, squats 0.074
# against the causal model's 0.033, 0.33, 0.087), and its root moves too (the pose fitted to
# the 2D: 0.25 m at 4-8 m on the validation takes, against 0.24 m for the causal blend).
DEFAULT_LIVE_LOOKAHEAD = 0
DEFAULT_VIDEO_LOOKAHEAD = 121
# --flip-tta when neither it nor --no-flip-tta is given (README "Look-ahead or smoothing?"):
# on where one person is lifted from a camera or a video (webcam, video): the second network
# pass (0.5-1 ms at one stream) is small next to MediaPipe's ~28 ms per frame and lowers
# real-video jitter by 5-13 %; off for serve, whose batched step it would double (half the
# streams per machine), and for the demo, which replays the service's latency figures.
DEFAULT_VIDEO_FLIP_TTA = True
DEFAULT_WEBCAM_FLIP_TTA = True


# ---------------------------------------------------------------------------- shared
def load_model(checkpoint: str | Path | None = None, name: str = "causal"):
    """Load ``checkpoint`` or the shipped ``model/weights/<name>.pt``; clear error if missing."""
    from poselift.model.checkpoint import CheckpointError, load_checkpoint
    from poselift.model.commands import default_checkpoint

    path = Path(checkpoint) if checkpoint else default_checkpoint(name)
    if not path.exists():
        if checkpoint:
            raise UserError(f"checkpoint not found: {path}")
        raise UserError(f"the shipped {name} model is missing ({path}); train it first "
                        f"(see README) or pass --checkpoint FILE")
    try:
        return load_checkpoint(path)
    except CheckpointError as exc:
        raise UserError(str(exc)) from None


def load_lookahead_model(checkpoint: str | Path | None = None, name: str = "causal", lookahead: int | None = None):
    """``--lookahead F``: the shipped model with F frames of look-ahead (0 causal, 121 the
    full-context model; the live latency is F frames); None: ``load_model(checkpoint, name)``."""
    if lookahead is None and not checkpoint and name == "causal" and DEFAULT_LIVE_LOOKAHEAD:
        lookahead = DEFAULT_LIVE_LOOKAHEAD
    if lookahead is None:
        return load_model(checkpoint, name)
    if checkpoint:
        raise UserError("--lookahead selects a shipped model; give either --lookahead or --checkpoint")
    from poselift.model.commands import lookahead_checkpoint

    try:
        return load_model(lookahead_checkpoint(lookahead))
    except ValueError as exc:
        raise UserError(str(exc)) from None


def smoothing_stages(engine: LiftEngine, fps: float, smooth: bool = False, min_cutoff: float = 1.0,
                     beta: float = 0.5) -> list:
    """``--smooth``: the causal One-Euro stage (stream.smoothing.SmoothingStage) as a PoseLoop
    stage list (empty when off). It goes before the motion stage."""
    if not smooth:
        return []
    from .smoothing import SmoothingStage

    try:
        return [SmoothingStage(fps, min_cutoff=min_cutoff, beta=beta, engine=engine)]
    except ValueError as exc:
        raise UserError(f"--smooth: {exc}") from None


def make_engine(ckpt, *, device: str = "auto", precision: str = "fp32", max_streams: int = 1,
                policy: GapPolicy | None = None, threads: int | None = 1, fov: float | None = None,
                flip_tta: bool = False, root: str = "blend") -> LiftEngine:
    """A LiftEngine for a loaded checkpoint. ``threads``: torch CPU threads (process-wide).
    One is the default: a streaming step is a few small matrix products, and several
    threads spin and wait on each other, which on a busy 2-core machine raised the p99
    latency from under 1 ms to about 50 ms. ``None`` leaves torch's setting alone.
    ``fov``: horizontal field of view in degrees of frames that state no ``focal_px`` (for
    the root; None: the default, ``model.root.DEFAULT_FOV_DEG``). ``flip_tta``: average
    every pose with that of the mirror image (model/mirror.py; one more network pass).
    ``root``: one of :data:`stream.ROOT_MODES` (``fit``: the trajectory network is not run)."""
    import torch

    from poselift.model import get_precision, resolve_device

    if root not in ROOT_MODES:
        raise UserError(f"--root must be one of {', '.join(ROOT_MODES)}, got {root!r}")
    if fov is not None and not 0 < fov < 180:
        raise UserError(f"--fov must be a horizontal field of view between 0 and 180 degrees, got {fov:g}")
    if threads is not None:
        if threads < 1:
            raise UserError("--threads must be at least 1")
        torch.set_num_threads(threads)

    try:
        dev = str(resolve_device(device))
    except RuntimeError as exc:
        raise UserError(f"--device {device}: {exc}") from None
    try:
        get_precision(precision, dev)
    except ValueError as exc:
        raise UserError(f"--precision {precision}: {exc}") from None
    try:
        return LiftEngine(ckpt.model, trajectory_model=ckpt.trajectory_model if root == "blend" else None,
                          max_streams=max_streams,
                          device=dev, precision=precision, policy=policy,
                          trajectory_meta=(getattr(ckpt, "meta", None) or {}).get("trajectory"), fov_deg=fov,
                          input_layout=getattr(ckpt, "input_layout", "h36m17"), flip_tta=flip_tta)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def motion_stages(engine: LiftEngine, *, raw: bool = False, vmc=None) -> list:
    """The post-processing stages of a live or offline loop: the motion stage (a consistent
    body, rotations and root per stream; skipped with ``raw``: the model's own joints are
    published) and, with a VMC sender, the VMC output after it."""
    from .motion_wire import MotionWire
    from .outputs import VMCStage

    if raw:
        return []
    stages: list = [MotionWire(engine)]
    if vmc is not None:
        stages.append(VMCStage(vmc))
    return stages


def _open_vmc(vmc: str | None, allow_remote: bool, raw: bool):
    from .outputs import open_vmc

    if vmc and raw:
        raise UserError("--vmc needs the joint rotations, which --raw turns off")
    sender = open_vmc(vmc, allow_remote)
    if sender is not None:
        print(f"sending VMC to {sender.address}:{sender.port}")
    return sender


def describe_model(ckpt, engine: LiftEngine) -> str:
    cfg = ckpt.model.config
    kind = ("causal" if cfg.causal else f"{'symmetric, ' if cfg.symmetric else ''}"
            f"{engine.latency_frames} frames of look-ahead")
    traj = ", with trajectory" if ckpt.trajectory_model is not None else ""
    flip = ", flip-averaged" if getattr(engine, "flip_tta", False) else ""
    return f"{Path(ckpt.path).name} (receptive field {cfg.receptive_field}, {kind}{traj}{flip}) on {engine.device}"


def latency_summary(latencies_ms: list[float]) -> dict[str, float]:
    if not latencies_ms:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    a = np.asarray(latencies_ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def mpjpe_mm(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean per-joint position error in millimetres, both made root-relative (joint 0)."""
    pred = pred - pred[:, :1]
    gt = gt - gt[:, :1]
    return float(np.linalg.norm(pred - gt, axis=-1).mean() * 1000.0)


def _publisher(addr: str | None, *, fallback: bool = False, lossless: bool = False, allow_remote: bool = False):
    from .service import PosePublisher

    if not addr:
        return None
    try:
        return PosePublisher(addr, lossless=lossless, allow_remote=allow_remote)
    except OSError as exc:
        if not fallback:
            raise UserError(str(exc)) from None
        pub = PosePublisher("tcp://127.0.0.1:*", lossless=lossless)
        print(f"note: {addr} is busy; publishing on {pub.endpoint} instead")
        return pub
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _order(poses: list[PoseOut], n: int) -> list[PoseOut | None]:
    by_frame: list[PoseOut | None] = [None] * n
    for p in poses:
        if 0 <= p.frame < n:
            by_frame[p.frame] = p
    return by_frame


# ------------------------------------------------------------------------------ demo
def run_demo(*, clip: str | Path | None = None, checkpoint: str | Path | None = None,
             out: str | Path | None = DEFAULT_DEMO_OUT, publish: str | None = "tcp://127.0.0.1:5556",
             frames: int | None = None, render_frames: int = 90, device: str = "auto", precision: str = "fp32",
             realtime: bool = False, threads: int | None = 1, allow_remote: bool = False, raw: bool = False,
             vmc: str | None = None, lookahead: int | None = None, smooth: bool = False,
             smooth_min_cutoff: float = 1.0, smooth_beta: float = 0.5, flip_tta: bool | None = None,
             root: str = "blend") -> dict[str, Any]:
    """Replay a recorded 2D clip through the streaming model, publish it, render it.

    Needs no camera and no peer: poses go out on a PUB socket (``publish``; watch with
    ``poselift listen``), and are drawn to ``out`` (GIF or MP4, ``None`` to skip). Prints
    per-frame latency p50/p99, throughput, and the MPJPE against the clip's ground truth.
    """
    from .sources import DEMO_CLIP, load_clip

    clip_path = Path(clip) if clip else DEMO_CLIP
    if not clip_path.exists():
        if clip:
            raise UserError(f"clip not found: {clip_path}")
        raise UserError(f"the bundled demo clip is missing ({clip_path}); reinstall poselift, "
                        f"or pass --clip FILE (an npz with keypoints, width, height, fps)")
    try:
        c = load_clip(clip_path)
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    vmc_sender = _open_vmc(vmc, allow_remote, raw)
    ckpt = load_lookahead_model(checkpoint, "causal", lookahead)
    engine = make_engine(ckpt, device=device, precision=precision, max_streams=1, threads=threads,
                         flip_tta=bool(flip_tta), root=root)
    n = len(c.keypoints) if frames is None else max(1, min(frames, len(c.keypoints)))
    print(f"poselift demo: {n} frames of {c.source or clip_path.name} ({c.width}x{c.height} px, {c.fps:g} fps)")
    print(f"model: {describe_model(ckpt, engine)}")
    pub = _publisher(publish, fallback=True, allow_remote=allow_remote)
    if pub is not None:
        print(f"publishing on {pub.endpoint} (topic pose3d.demo); watch with: poselift listen {pub.endpoint}")
        time.sleep(0.2)  # let a listener that is already waiting connect
    poses: list[PoseOut] = []
    loop = PoseLoop(engine, collect(poses, pub.send_pose if pub is not None else None),
                    stages=[*smoothing_stages(engine, c.fps, smooth, smooth_min_cutoff, smooth_beta),
                            *motion_stages(engine, raw=raw, vmc=vmc_sender)])
    latencies = loop.latencies_ms
    t0 = time.perf_counter()
    try:
        loop.feed(c.frames("demo", realtime=realtime, limit=n))
        loop.flush()
    finally:
        if pub is not None:
            pub.close()
        if vmc_sender is not None:
            vmc_sender.close()
    elapsed = time.perf_counter() - t0
    lat = latency_summary(latencies)
    result: dict[str, Any] = {"frames": n, "published": len(poses), **lat, "fps": n / elapsed if elapsed > 0 else 0.0,
                              "endpoint": pub.endpoint if pub else None}
    print(f"latency per frame: p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms; "
          f"throughput {result['fps']:.0f} FPS ({len(poses)} poses published)")
    ordered = _order(poses, n)
    pred = np.stack([p.joints if p is not None else np.full((17, 3), np.nan, np.float32) for p in ordered])
    if c.poses3d is not None:
        ok = ~np.isnan(pred).any(axis=(1, 2))
        result["mpjpe_mm"] = mpjpe_mm(pred[ok], c.poses3d[:n][ok])
        print(f"MPJPE against the clip's ground truth: {result['mpjpe_mm']:.1f} mm over {int(ok.sum())} frames")
    if out:
        from .render import pose_arrays, render_animation

        t1 = time.perf_counter()
        shown = pose_arrays(ordered, c.width, c.height, c.keypoints[:n])
        written = render_animation(out, shown["keypoints2d"], shown["joints3d"], width=c.width, height=c.height,
                                   fps=c.fps, ground_truth=None if c.poses3d is None else c.poses3d[:n],
                                   max_frames=render_frames, title="poselift demo (grey: ground truth)",
                                   confidence=shown["confidence"], root=shown["root"])
        result["animation"] = str(written)
        print(f"animation: {written} ({time.perf_counter() - t1:.1f} s to render)")
    result["poses"] = pred
    return result


# ----------------------------------------------------------------------------- serve
@dataclass
class ServeParts:
    """What ``serve`` lifts with: the checkpoint, its engine, serve's post-processing stages
    (frame-rate check, optional smoothing, motion stage, optional VMC output) and the VMC
    sender to close at the end (or None)."""

    ckpt: Any
    engine: LiftEngine
    stages: list
    vmc_sender: Any = None


def serve_parts(*, checkpoint: str | Path | None = None, device: str = "auto", precision: str = "fp32",
                max_streams: int = 16, policy: GapPolicy | None = None, threads: int | None = 1,
                allow_remote: bool = False, raw: bool = False, vmc: str | None = None,
                lookahead: int | None = None, smooth: bool = False, smooth_min_cutoff: float = 1.0,
                smooth_beta: float = 0.5, warn: Callable[[str], None] | None = None,
                flip_tta: bool | None = None, root: str = "blend") -> ServeParts:
    """The model, engine and stages of ``serve``, built once here for the single server
    (:func:`run_serve`), for each worker of ``serve --workers N`` (:mod:`stream.sharded`)
    and for the benches' servers, so that all of them lift exactly alike. ``warn``: where
    the frame-rate check's one line goes (default stderr; the load bench, whose paced
    senders are not 30 fps cameras, silences it)."""
    from .fps_check import FrameRateCheck

    vmc_sender = _open_vmc(vmc, allow_remote, raw)
    ckpt = load_lookahead_model(checkpoint, "causal", lookahead)
    engine = make_engine(ckpt, device=device, precision=precision, max_streams=max_streams, policy=policy,
                         threads=threads, flip_tta=bool(flip_tta), root=root)
    stages = [FrameRateCheck(getattr(ckpt, "fps", 30.0), warn=warn),
              *smoothing_stages(engine, ckpt.fps, smooth, smooth_min_cutoff, smooth_beta),
              *motion_stages(engine, raw=raw, vmc=vmc_sender)]
    return ServeParts(ckpt, engine, stages, vmc_sender)


def run_serve(*, input: str = "tcp://127.0.0.1:5555", publish: str = "tcp://127.0.0.1:5556",
              checkpoint: str | Path | None = None, lossless: bool = False, device: str = "auto",
              precision: str = "fp32", max_streams: int = 16, single_frame: bool = False,
              max_frames: int | None = None, duration: float | None = None,
              policy: GapPolicy | None = None, threads: int | None = 1,
              allow_remote: bool = False, curve_secret_key: str | None = None,
              curve_clients: str | None = None, raw: bool = False, vmc: str | None = None,
              lookahead: int | None = None, smooth: bool = False, smooth_min_cutoff: float = 1.0,
              smooth_beta: float = 0.5, workers: int = 1, flip_tta: bool | None = None,
              root: str = "blend") -> dict[str, Any]:
    """Turn a ZeroMQ 2D feed into 3D poses until Ctrl-C/SIGTERM (or ``max_frames``/``duration``).

    The first SIGINT or SIGTERM stops it cleanly: queued frames are lifted, pending poses
    flushed, a final ``counters`` status is sent and the counters are printed. A second
    signal stops waiting (e.g. on a lossless consumer that no longer reads).
    ``workers`` > 1: that many stream-sharded server processes behind the same two
    addresses (:func:`stream.sharded.run_sharded`; docs/protocol.md, Sharded mode)."""
    from .service import PoseServer

    options = dict(checkpoint=checkpoint, device=device, precision=precision, max_streams=max_streams,
                   policy=policy, threads=threads, allow_remote=allow_remote, raw=raw, vmc=vmc,
                   lookahead=lookahead, smooth=smooth, smooth_min_cutoff=smooth_min_cutoff,
                   smooth_beta=smooth_beta, flip_tta=flip_tta, root=root)
    if workers != 1:
        from .sharded import run_sharded

        return run_sharded(workers, input=input, publish=publish, lossless=lossless, single_frame=single_frame,
                           max_frames=max_frames, duration=duration, curve_secret_key=curve_secret_key,
                           curve_clients=curve_clients, options=options)
    parts = serve_parts(**options)
    ckpt, engine, vmc_sender = parts.ckpt, parts.engine, parts.vmc_sender
    try:
        server = PoseServer(engine, input, publish, lossless=lossless, single_frame=single_frame,
                            allow_remote=allow_remote, curve_secret_key=curve_secret_key,
                            curve_clients=curve_clients, stages=parts.stages)
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from None
    kind = ("PULL", "PUSH") if lossless else ("SUB", "PUB")
    print(f"model: {describe_model(ckpt, engine)}")
    print(f"input  {kind[0]} bound at {server.input_endpoint} (senders connect here)")
    print(f"output {kind[1]} bound at {server.publish_endpoint} (consumers connect here)", flush=True)
    with stop_on_signals(server.stop) as stopped_by:
        try:
            counters = server.serve_forever(max_frames=max_frames, duration_s=duration)
        except KeyboardInterrupt:
            counters = server.counters()
        finally:
            server.close()
            if vmc_sender is not None:
                vmc_sender.close()
    return print_serve_summary(counters, server.latencies_ms, stopped_by)


@contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[list[str]]:
    """While inside: the first SIGINT or SIGTERM calls ``stop`` (a clean stop: SIGTERM used to
    kill serve without flushing or reporting), a second one raises KeyboardInterrupt (stop
    waiting, e.g. on a lossless consumer that no longer reads). Yields the names of the
    signals received. Outside the main thread no handler is installed."""
    import signal
    import threading

    stopped_by: list[str] = []

    def on_signal(signum, _frame):
        stopped_by.append(signal.Signals(signum).name)
        if len(stopped_by) > 1:
            raise KeyboardInterrupt
        stop()

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    settle_heap()  # the model is loaded: freeze start-up state, fewer collections (poselift/gc_policy.py)
    try:
        yield stopped_by
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)


def print_serve_summary(counters: dict[str, Any], latencies_ms: Sequence[float],
                        stopped_by: list[str]) -> dict[str, Any]:
    """``serve``'s closing lines (why it stopped, the counters, the latency); returns the
    counters with the latency summary."""
    lat = latency_summary(latencies_ms)
    if stopped_by:
        print(f"stopped by {stopped_by[0]}" + (" (forced: pending poses not flushed)" if len(stopped_by) > 1 else ""))
    latency = (f"latency p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms" if len(latencies_ms)
               else "no poses, no latency")
    print(f"received {counters['received']}, published {counters['published']}, rejected {counters['rejected']}, "
          f"resets {counters['resets']}; {latency}")
    print("final counters: " + json.dumps(counters, sort_keys=True), flush=True)
    return {**counters, **lat}


# ---------------------------------------------------------------------------- webcam
def run_webcam(*, camera: int = 0, video: str | None = None, checkpoint: str | Path | None = None,
               publish: str | None = None, window: bool = True, device: str = "auto", precision: str = "fp32",
               max_frames: int | None = None, stream: str = "cam0", threads: int | None = 1,
               allow_remote: bool = False, verbose: bool = False, raw: bool = False,
               vmc: str | None = None, fov: float | None = None, lookahead: int | None = None,
               smooth: bool = False, smooth_min_cutoff: float = 1.0, smooth_beta: float = 0.5,
               flip_tta: bool | None = None, root: str = "blend") -> dict[str, Any]:
    """Camera (or video file) -> MediaPipe -> streaming lifter, with a live window and
    optional publishing. Latency is measured from frame capture (before detection) to
    the lifted pose."""
    from poselift.model.normalization import denormalize_screen

    from .sources import VideoSource

    if window and sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UserError("no display found (DISPLAY is not set); use --no-window to run headless")
    vmc_sender = _open_vmc(vmc, allow_remote, raw)
    ckpt = load_lookahead_model(checkpoint, "causal", lookahead)
    engine = make_engine(ckpt, device=device, precision=precision, max_streams=1, threads=threads, fov=fov,
                         flip_tta=DEFAULT_WEBCAM_FLIP_TTA if flip_tta is None else flip_tta, root=root)
    try:
        src = VideoSource(video if video else camera, stream=stream, max_frames=max_frames, verbose=verbose)
    except (FileNotFoundError, RuntimeError) as exc:
        raise UserError(str(exc)) from None
    if getattr(ckpt, "fps_warning", None) and ckpt.fps_warning(src.fps):
        print(ckpt.fps_warning(src.fps), file=sys.stderr)
    pub = _publisher(publish, allow_remote=allow_remote)
    print(f"model: {describe_model(ckpt, engine)}")
    if pub is not None:
        print(f"publishing on {pub.endpoint} (topic pose3d.{stream})")
    loop = PoseLoop(engine, pub.send_pose if pub is not None else None,
                    stages=[*smoothing_stages(engine, src.fps or ckpt.fps, smooth, smooth_min_cutoff, smooth_beta),
                            *motion_stages(engine, raw=raw, vmc=vmc_sender)])
    latencies = loop.latencies_ms
    n = 0
    settle_heap()  # the model and MediaPipe are loaded: as serve (poselift/gc_policy.py)
    t0 = time.perf_counter()
    window_name = "poselift (q to quit)"
    view = None
    try:
        import cv2

        for bgr, f in src:
            loop.submit(f)
            loop.step()
            n += 1
            if window:
                last = loop.last
                fps = n / max(time.perf_counter() - t0, 1e-9)
                if view is None:  # the same composed view as `video --render`
                    from .render import FrameRenderer

                    view = FrameRenderer()
                kp = (denormalize_screen(last.input2d, f.width, f.height)
                      if last is not None and last.input2d is not None else np.full((17, 2), np.nan))
                sure = ~np.isin(np.arange(17), last.filled if last is not None else [])
                joints = last.joints if last is not None and last.valid else None  # consistent unless --raw
                image = view.render(bgr, kp, sure, joints, last.root if last is not None else None,
                                    label=f"{fps:.1f} FPS  latency {latencies[-1] if latencies else 0:.0f} ms")
                try:
                    if n == 1:
                        cv2.namedWindow(window_name, cv2.WINDOW_NORMAL)  # resizable: the view is 1280+ wide
                    cv2.imshow(window_name, image)
                    key = cv2.waitKey(1) & 0xFF
                except cv2.error as exc:
                    raise UserError(f"cannot open a window ({str(exc).strip().splitlines()[-1]}); "
                                    f"use --no-window to run headless") from None
                if key in (ord("q"), 27):
                    break
        loop.flush()  # a symmetric checkpoint's last poses
    except KeyboardInterrupt:
        pass
    finally:
        src.close()
        if pub is not None:
            pub.close()
        if vmc_sender is not None:
            vmc_sender.close()
        if window:
            try:
                import cv2

                cv2.destroyAllWindows()
            except Exception:
                pass
    elapsed = time.perf_counter() - t0
    lat = latency_summary(latencies)
    valid = loop.valid
    result = {"frames": n, "valid": valid, "fps": n / elapsed if elapsed > 0 else 0.0, **lat}
    print(f"{n} frames ({valid} valid poses), {result['fps']:.1f} FPS; latency capture->3D "
          f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms")
    return result


# ----------------------------------------------------------------------------- video
def video_arrays(frames: list, engine: LiftEngine, *, raw: bool = False,
                 stages: list | tuple = ()) -> dict[str, Any]:
    """The offline ``video`` path without the detector: the frames (one stream, frame
    numbers 0..T-1) go through the same :class:`stream.loop.PoseLoop` as the live path,
    then the stream is flushed. Returns the arrays ``run_video`` saves (except fps and the
    joint names): ``poses3d`` (T, 17, 3), ``keypoints2d`` (T, 17, 2) H36M pixels as
    detected (NaN = missing), ``input2d`` (T, 17, 2) the filled model input in pixels
    (NaN where nothing was liftable), ``frames``, ``valid``, ``warmup``, ``filled``
    (T, 17), ``width``, ``height`` and ``trajectory`` (T, 3) (the root, camera metres; NaN
    where a frame could not be placed).
    Unless ``raw``, the motion stage runs as live: ``poses3d`` are the consistent joints and
    ``joints_raw`` the model's own, plus ``rotations`` (T, 19, 4), ``root`` (T, 3) (the Hips
    in the rig frame: pelvis plus trajectory), ``bone_lengths`` (T, 16) (the body each pose
    uses), ``settled`` (T,) and ``motion_valid`` (T,) (the pose has usable rotations). Unlike
    live, the warm-up poses already take the body the stream settled on
    (:func:`stream.settled_take.settle_warmup`): offline, the whole take is known."""
    from poselift.model.normalization import denormalize_screen

    from .intake import frame_to_model_input
    from .settled_take import settle_warmup

    poses: list[PoseOut] = []
    loop = PoseLoop(engine, collect(poses), stages=[*stages, *motion_stages(engine, raw=raw)])
    detected = []
    for f in frames:
        detected.append(denormalize_screen(frame_to_model_input(f, engine.policy.min_confidence), f.width, f.height))
        loop.submit(f)
        loop.step()
    loop.flush()
    n = len(detected)
    ordered = _order(poses, n)
    if any(p is None for p in ordered) or len(poses) != n:
        raise RuntimeError(f"offline lifting gave {len(poses)} poses for {n} frames")  # a bug, not a user error
    width, height = frames[-1].width, frames[-1].height
    arrays: dict[str, Any] = dict(
        poses3d=np.stack([p.joints for p in ordered]).astype(np.float32),
        keypoints2d=np.stack(detected).astype(np.float32),
        input2d=np.stack([denormalize_screen(p.input2d, width, height) if p.input2d is not None
                          else np.full((17, 2), np.nan) for p in ordered]).astype(np.float32),
        frames=np.arange(n), valid=np.array([p.valid for p in ordered]),
        warmup=np.array([p.warmup for p in ordered]),
        filled=np.stack([np.isin(np.arange(17), p.filled) for p in ordered]),
        width=np.int64(width), height=np.int64(height))
    arrays["trajectory"] = np.stack([p.root if p.root is not None else np.full(3, np.nan)
                                     for p in ordered]).astype(np.float32)
    if not raw:
        arrays.update(motion_arrays(ordered))
        settle_warmup(arrays, [p.epoch for p in ordered])
    return arrays


def motion_arrays(poses: list) -> dict[str, np.ndarray]:
    """The npz arrays of the motion stage's outputs (see :func:`video_arrays`)."""
    motion = [p.extras["motion"] for p in poses]
    return dict(
        joints_raw=np.stack([p.extras["joints_raw"] for p in poses]).astype(np.float32),
        rotations=np.stack([m.rotations for m in motion]), root=np.stack([m.hips for m in motion]),
        bone_lengths=np.stack([m.lengths for m in motion]), settled=np.array([m.settled for m in motion]),
        motion_valid=np.array([m.valid for m in motion]))


def run_video(path: str | Path, *, out: str | Path, render: str | Path | None = None, model: str | None = None,
              checkpoint: str | Path | None = None, device: str = "auto", max_frames: int | None = None,
              policy: GapPolicy | None = None, precision: str = "fp32", threads: int | None = 1,
              verbose: bool = False, raw: bool = False, bvh: str | Path | None = None,
              vmc: str | None = None, allow_remote: bool = False, fov: float | None = None,
              lookahead: int | None = None, smooth: bool = False, smooth_min_cutoff: float = 1.0,
              smooth_beta: float = 0.5, flip_tta: bool | None = None, root: str = "blend") -> dict[str, Any]:
    """Offline lifting of a whole video: MediaPipe on every frame, then the same intake
    (layout, normalisation, gap filling) and lifting loop as ``webcam``/``serve``, with the
    stream flushed at the end, so every frame gets the pose and validity flag the live path
    would give it (a symmetric ``--model full`` sees its look-ahead for every frame but the
    last ones, which the flush completes as ``lift_sequence`` does). Writes ``out`` (npz)
    with ``poses3d`` (T, 17, 3) metres, ``keypoints2d`` (T, 17, 2) H36M pixels as detected
    (NaN = missing), ``frames`` (T,) frame indices, plus ``valid``, ``warmup``, ``filled``,
    ``fps``, ``width``, ``height``, ``joint_names`` and the root,
    ``trajectory`` (T, 3) metres. Frames with nothing liftable (no person yet, or after a
    reset) have ``valid`` false and zero joints, as live. ``threads``: torch CPU threads.
    ``verbose``: keep MediaPipe's native log lines (silenced by default). Unless ``raw``,
    ``poses3d`` are consistent with the stream's body and the motion arrays of
    :func:`video_arrays` are saved too; ``bvh``: also write the motion as a BVH file;
    ``vmc``: then replay it to a VMC receiver (``HOST:PORT``) at the video's frame rate."""
    from poselift.model.skeleton import H36M_JOINT_NAMES

    from .outputs import check_writable
    from .sources import VideoSource

    if model is not None and lookahead is not None:
        raise UserError("give either --model or --lookahead (--model causal is --lookahead 0, full is the "
                        "full-context look-ahead)")
    if model is None and lookahead is None and not checkpoint:
        lookahead = DEFAULT_VIDEO_LOOKAHEAD
    model = model or "causal"
    if model not in ("causal", "full"):
        raise UserError("--model must be causal or full")
    if Path(out).suffix != ".npz":
        raise UserError(f"--out must be an .npz file, got {out}")
    if render and Path(render).suffix.lower() not in (".mp4", ".avi", ".gif"):
        raise UserError(f"--render must end in .mp4, .avi or .gif, got {render}")
    if bvh and raw:
        raise UserError("--bvh needs the joint rotations, which --raw turns off")
    if bvh:
        check_writable(bvh, "--bvh")
    vmc_sender = _open_vmc(vmc, allow_remote, raw)
    ckpt = load_lookahead_model(checkpoint, model, lookahead)
    if flip_tta is None:  # offline, one more network pass costs nothing worth saving
        flip_tta = DEFAULT_VIDEO_FLIP_TTA
    engine = make_engine(ckpt, device=device, precision=precision, max_streams=1, policy=policy, threads=threads,
                         fov=fov, flip_tta=flip_tta, root=root)
    try:
        src = VideoSource(str(path), stream="video", max_frames=max_frames, verbose=verbose)
    except (FileNotFoundError, RuntimeError) as exc:
        raise UserError(str(exc)) from None
    if getattr(ckpt, "fps_warning", None) and ckpt.fps_warning(src.fps):
        print(ckpt.fps_warning(src.fps), file=sys.stderr)
    try:
        frames = [f for _, f in src]
    finally:
        src.close()
    if not frames:
        raise UserError(f"{path}: no frames could be read")
    arrays = video_arrays(frames, engine, raw=raw,
                          stages=smoothing_stages(engine, src.fps or ckpt.fps, smooth, smooth_min_cutoff, smooth_beta))
    if np.isnan(arrays["input2d"]).all():  # no frame had anything to lift
        raise UserError(f"{path}: no person was detected in any of its {len(frames)} frames")
    input2d = arrays.pop("input2d")
    arrays.update(fps=np.float64(src.fps), joint_names=np.array(H36M_JOINT_NAMES))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    n, n_valid = len(frames), int(arrays["valid"].sum())
    print(f"{n} frames ({n_valid} valid) lifted with {Path(ckpt.path).name}{', flip-averaged' if flip_tta else ''} "
          f"-> {out}")
    result: dict[str, Any] = {"frames": n, "valid": n_valid, "out": str(out)}
    result.update(_video_motion_outputs(arrays, src.fps, bvh, vmc_sender))
    if render:
        from .render import render_video

        # The published skeleton (consistent unless --raw) and the trajectory root, over the
        # real frames (re-read: keeping a whole decoded video in memory is too much).
        joints = np.where(arrays["valid"][:, None, None], arrays["poses3d"], np.nan)
        try:
            written, count = render_video(render, path, input2d, joints, fps=src.fps, confidence=~arrays["filled"],
                                          root=arrays.get("trajectory"), title=Path(path).name)
        except (RuntimeError, ValueError) as exc:
            raise UserError(f"--render {render}: {exc}") from None
        result["render"] = str(written)
        print(f"rendering: {written} ({count} frames)")
    return result


def _video_motion_outputs(arrays: dict[str, Any], fps: float, bvh: str | Path | None, vmc_sender) -> dict[str, Any]:
    """``video --bvh`` and ``video --vmc``: the take's motion to a file and/or a receiver."""
    from .bvh_record import take_lengths, write_take
    from .outputs import replay_vmc

    result: dict[str, Any] = {}
    usable = arrays.get("motion_valid")
    if bvh and usable is not None:
        if not usable.any():
            raise UserError("no frame had a usable pose: no BVH written")
        written = write_take(bvh, arrays["rotations"], arrays["root"], usable, take_lengths(arrays), 1.0 / fps)
        result["bvh"] = str(written)
        print(f"BVH: {written} ({len(usable)} frames at {fps:g} fps)")
    if vmc_sender is not None:
        try:
            result["vmc_sent"] = replay_vmc(vmc_sender, arrays, fps)
        except KeyboardInterrupt:
            pass
        finally:
            vmc_sender.close()
        print(f"VMC: {vmc_sender.sent} poses sent to {vmc_sender.address}:{vmc_sender.port}")
    return result


# ---------------------------------------------------------------------------- listen
def format_pose(msg: dict[str, Any]) -> str:
    if msg.get("type") == "status":
        c = msg.get("counters") or {}
        extra = f" {msg.get('reason')}: {msg.get('detail')}" if msg.get("reason") else ""
        return (f"status {msg.get('event')}{extra} | received {c.get('received')} published {c.get('published')} "
                f"rejected {c.get('rejected_total')} resets {c.get('resets')}")
    j = np.asarray(msg["joints"], dtype=np.float64)
    head = j[10] if len(j) > 10 else j[-1]
    flags = "".join([" warmup" if msg.get("warmup") else "", "" if msg.get("valid") else " INVALID",
                     f" filled={msg['filled']}" if msg.get("filled") else "", f" gap={msg['gap']}" if msg.get("gap") else ""])
    return (f"pose3d {msg['stream']} frame {msg['frame']} latency {msg['latency_ms']:.2f} ms "
            f"head ({head[0]:+.2f}, {head[1]:+.2f}, {head[2]:+.2f}) m{flags}")


def run_listen(addr: str = "tcp://127.0.0.1:5556", *, lossless: bool = False, streams: list[str] | None = None,
               count: int | None = None, timeout: float | None = None, as_json: bool = False,
               latest: bool = False, status: bool = True, plot: bool = False, out=None,
               curve_server_key: str | None = None, curve_secret_key: str | None = None,
               bvh: str | Path | None = None) -> dict[str, Any]:
    """Example consumer: connect to a publisher and print each pose (or JSON lines);
    ``plot`` also shows the newest pose in a live 3D view (needs a display); ``bvh`` records
    the motion (:class:`stream.bvh_record.BVHRecording`), files closed at the end, on
    Ctrl-C and on SIGTERM."""
    import signal
    import threading

    from .bvh_record import BVHRecording
    from .client import PoseReceiver
    from .outputs import check_writable

    out = out or sys.stdout
    recording = None
    if bvh:
        if latest:
            raise UserError("--bvh records every pose; it cannot be used with --latest")
        single = bool(streams) and len(streams) == 1
        recording = BVHRecording(bvh, single=single)
        check_writable(recording.path if single else recording.path.with_name(f"{recording.path.stem}-x.bvh"), "--bvh")
    view = None
    if plot:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise UserError("--plot needs a display (DISPLAY is not set)")
        from .render import LivePlot

        view = LivePlot()
    try:
        rx = PoseReceiver(addr, lossless=lossless, streams=streams, status=status or recording is not None,
                          latest_only=latest, curve_server_key=curve_server_key, curve_secret_key=curve_secret_key)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    old_term = None
    if recording is not None and threading.current_thread() is threading.main_thread():
        def on_term(signum, _frame):  # close the BVH files cleanly, as on Ctrl-C
            raise KeyboardInterrupt
        old_term = signal.signal(signal.SIGTERM, on_term)
    poses = statuses = 0
    t_end = None if timeout is None else time.monotonic() + timeout
    print(f"listening on {addr} ({'PULL' if lossless else 'SUB'}); Ctrl-C to stop", file=sys.stderr, flush=True)
    try:
        while count is None or poses < count:
            wait = None if t_end is None else max(0, int((t_end - time.monotonic()) * 1000))
            msg = rx.recv(wait)
            if msg is None:
                break
            if recording is not None and (not streams or msg.get("stream") in streams):
                recording.message(msg)
            if msg.get("type") != "pose3d" and not status:
                continue
            if msg.get("type") == "pose3d":
                poses += 1
                if view is not None and msg.get("valid") and not view.update(
                        msg["joints"], f"{msg['stream']} frame {msg['frame']}"):
                    break  # the plot window was closed
            else:
                statuses += 1
            print(json.dumps(msg) if as_json else format_pose(msg), file=out, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        rx.close()
        if view is not None:
            view.close()
        if recording is not None:
            for written in recording.close():
                print(f"BVH: {written}", file=sys.stderr, flush=True)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    if (rx.dropped and not latest) or rx.publisher_restarts:  # from the per-stream `seq` of the poses
        print(f"missed {rx.dropped} pose(s) the publisher sent ({'skipped on purpose with --latest' if latest else 'slow consumer: PUB drops'})"
              + (f"; publisher restarted {rx.publisher_restarts} time(s)" if rx.publisher_restarts else ""),
              file=sys.stderr, flush=True)
    return {"poses": poses, "status": statuses, "dropped": rx.dropped, "publisher_restarts": rx.publisher_restarts}


# ---------------------------------------------------------------------------- keygen
def run_keygen(folder: str, *, stem: str = "poselift") -> dict[str, str]:
    """Write a CURVE key pair (``NAME.key`` public, ``NAME.key_secret`` private)."""
    from .transport import generate_keys

    try:
        public, secret = generate_keys(folder, stem)
    except OSError as exc:
        raise UserError(f"cannot write keys into {folder}: {exc}") from None
    print(f"public key (give to peers): {public}")
    print(f"secret key (keep private):  {secret}")
    return {"public": public, "secret": secret}
