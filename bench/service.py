"""Benchmarks 5 and 6, over the stream package's own importable pieces.

5. ZeroMQ end to end over loopback: a ``PoseServer`` (the code behind ``poselift serve``)
   runs in its own process in lossless mode (PUSH/PULL), the sender and the receiver in
   this one. Latency: one stream, one frame in flight at a time, send to receive. Rate:
   many streams at a paced total input rate; a rate is *sustained* when every frame comes
   back (0 lost) and the backlog does not grow (the last pose arrives within 0.25 s of the
   last send).
6. Webcam pipeline on a video file (a clip made from skimage's astronaut photo, shifted a
   little each frame), in ms per frame: capture (OpenCV read), MediaPipe (colour
   conversion + pose landmarks), lift (``PoseLoop.submit`` + ``step`` less the time in its
   sink) and publish (the sink: ``PosePublisher.send_pose`` on a loopback PUB socket).

The model is the shipped causal one when present, else random weights of the same
default architecture (243 frames, 1024 channels), which run at the same speed.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def _default_model():
    from .models import describe, random_model, shipped

    m, where = shipped("causal")
    if m is None:
        m = random_model(243, causal=True)
        return m, f"random weights, {describe(m)} (shipped causal model: {where})"
    return m, f"{where} ({describe(m)})"


def _clip(frames: int = 240) -> tuple[np.ndarray, int, int]:
    """(T, 17, 2) pixels of a moving synthetic skeleton, and the image size."""
    from poselift.model.skeleton import H36M_PARENTS

    off = np.array([
        [0, 0, 0], [-0.13, 0, 0], [0, 0.45, 0], [0, 0.45, 0], [0.13, 0, 0], [0, 0.45, 0], [0, 0.45, 0],
        [0, -0.25, 0], [0, -0.25, 0], [0, -0.1, 0], [0, -0.12, 0], [0.18, 0.03, 0], [0, 0.28, 0], [0, 0.25, 0],
        [-0.18, 0.03, 0], [0, 0.28, 0], [0, 0.25, 0]])
    poses = np.zeros((frames, 17, 3))
    for t in range(frames):
        a = 0.03 * t
        rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        for j, p in enumerate(H36M_PARENTS):
            poses[t, j] = 0 if p < 0 else poses[t, p] + rot @ off[j]
    p = poses + np.array([0, 0, 4.0])
    px = np.stack([500 * p[..., 0] / p[..., 2] + 320, 500 * p[..., 1] / p[..., 2] + 240], -1)
    return px, 640, 480


def _encode_all(n_streams: int, frames: int, t: float | None = None):
    """Input messages per stream (``t``: every message's time; None: the frame number)."""
    from poselift.stream.protocol import encode_input

    px, w, h = _clip()
    return [[encode_input(f"s{s}", k, px[(k + 7 * s) % len(px)], width=w, height=h, t=float(k) if t is None else t)
             for k in range(frames)] for s in range(n_streams)]


def _latency(server, frames: int, warmup: int) -> dict:
    from poselift.stream.client import KeypointSender, PoseReceiver

    msgs = _encode_all(1, frames + warmup)[0]
    tx = KeypointSender(server.input, lossless=True)
    rx = PoseReceiver(server.publish, lossless=True, status=False)
    lat = []
    lost = 0
    try:
        for i, m in enumerate(msgs):
            t = time.perf_counter()
            tx.send_raw(m)
            msg = rx.recv(5000)
            dt = (time.perf_counter() - t) * 1e3
            if msg is None:
                lost += 1
                continue
            if i >= warmup:
                lat.append(dt)
    finally:
        tx.close()
        rx.close()
    a = np.sort(np.array(lat))
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "max_ms": float(a.max()), "frames": len(lat), "lost": lost}


def bench_zmq(device: str = "cpu", quick: bool = False, precisions: tuple[str, ...] | None = None,
              threads: int = 1, scale: float = 1.0) -> dict:
    """p50/p99 send-to-receive latency and the highest sustained lossless rate, per precision."""
    import zmq  # noqa: F401  (fail here, at once, when pyzmq is missing)

    import poselift.stream.service  # noqa: F401
    precisions = precisions or (("fp32",) if quick else (("fp32", "int8") if device == "cpu" else ("fp32", "fp16")))
    # fp32 at the service's default of 1 torch thread first (the headline figure), then each
    # precision at 1 and 2 threads when there is time.
    combos = [(precisions[0], threads)]
    if not quick:
        for p in precisions:
            for th in (1, 2):
                if (p, th) not in combos:
                    combos.append((p, th))
    n_streams = 16 if quick else 64
    rates = (1000.0, 2000.0) if quick else (1000.0, 2000.0, 3000.0, 4000.0, 6000.0, 8000.0, 12000.0, 16000.0)
    duration = (0.5 if quick else 2.0) * scale
    out: dict = {"streams_for_rate": n_streams, "torch_threads_in_server": threads, "mode": "lossless (PUSH/PULL)",
                 "by_precision": {}}
    from .load import ServeProcess, messages, run_at_rate

    msgs = messages(n_streams)
    for p, th in combos:
        server = ServeProcess(n_streams, th, as_serve=False, precision=p, device=device)
        try:
            out["model"] = server.label
            lat = _latency(server, max(20, int((100 if quick else 400) * scale)), 10 if scale < 1 else 30)
            runs = []
            for r in rates:
                res = run_at_rate(server, r, n_streams, duration, msgs)
                runs.append(res)
                if not res["sustained"]:
                    break
            best = max((x["rate_fps"] for x in runs if x["sustained"]), default=0.0)
            out["by_precision"][f"{p}@{th}"] = {"latency": lat, "rates": runs, "max_sustained_fps": best,
                                                "precision": p, "torch_threads": th}
        finally:
            server.close()
    main = out["by_precision"][f"{precisions[0]}@{threads}"]
    out["zmq_p50_ms"] = main["latency"]["p50_ms"]
    out["zmq_p99_ms"] = main["latency"]["p99_ms"]
    out["zmq_max_rate_fps"] = main["max_sustained_fps"]
    sustained = [x for x in main["rates"] if x["sustained"]]
    out["zmq_lost"] = sustained[-1]["lost"] if sustained else main["rates"][0]["lost"]
    out["precision"] = precisions[0]
    return out


def make_video(path: Path, frames: int = 60) -> Path:
    """An MJPG clip of skimage's astronaut photo (public domain), drifting sideways."""
    import cv2

    try:
        from skimage import data as skdata
    except ImportError:
        raise RuntimeError("the webcam-pipeline benchmark needs scikit-image for its test clip: "
                           "pip install -e '.[bench]'") from None
    img = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    h, w = img.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (w, h))
    for t in range(frames):
        shift = int(8 * np.sin(t / 6))
        m = np.float32([[1, 0, shift], [0, 1, 0]])
        writer.write(cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT))
    writer.release()
    return path


def bench_pipeline(device: str = "cpu", quick: bool = False, precision: str = "fp32", threads: int = 1,
                   scale: float = 1.0) -> dict:
    """ms per frame of each stage of the webcam pipeline, run on a video file."""
    import tempfile

    import cv2
    import torch

    from poselift.stream.engine import LiftEngine
    from poselift.stream.loop import PoseLoop
    from poselift.stream.protocol import Frame2D
    from poselift.stream.service import PosePublisher
    from poselift.stream.sources import MediaPipeDetector

    frames = max(8, int((20 if quick else 90) * scale))
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    model, label = _default_model()
    stages = {"capture": [], "mediapipe": [], "lift": [], "publish": []}
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(Path(tmp) / "astronaut.avi", frames)
        engine = LiftEngine(model, max_streams=1, device=device, precision=precision)
        pub = PosePublisher("tcp://127.0.0.1:*")
        publish_s = [0.0]

        def sink(p):  # the publish stage, timed apart from the lifting
            t = time.perf_counter()
            latency = pub.send_pose(p)
            publish_s[0] += time.perf_counter() - t
            return latency

        loop = PoseLoop(engine, sink)
        det = MediaPipeDetector()
        cap = cv2.VideoCapture(str(video))
        n = 0
        wall0 = time.perf_counter()
        try:
            while True:
                t0 = time.perf_counter()
                ok, bgr = cap.read()
                t1 = time.perf_counter()
                if not ok:
                    break
                h, w = bgr.shape[:2]
                kp, conf = det.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                t2 = time.perf_counter()
                publish_s[0] = 0.0
                loop.submit(Frame2D("cam0", n, n / 30.0, "mediapipe33", w, h, kp, conf, t0))
                loop.step()
                t4 = time.perf_counter()
                t3 = t4 - publish_s[0]
                for k, v in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    stages[k].append(v * 1e3)
                n += 1
        finally:
            wall = time.perf_counter() - wall0
            cap.release()
            det.close()
            pub.close()
            torch.set_num_threads(old)
    skip = min(5, n // 4)  # MediaPipe's first frames include its graph start-up
    ms = {k: float(np.median(v[skip:])) for k, v in stages.items()}
    ms["total"] = float(sum(ms.values()))
    mean = {k: float(np.mean(v[skip:])) for k, v in stages.items()}
    return {"pipeline_ms": ms, "mean_ms": mean, "frames": n, "fps_from_medians": 1000 / ms["total"],
            "fps_wall": n / wall, "lift_share": ms["lift"] / ms["total"], "model": label, "precision": precision,
            "torch_threads": threads, "video": "astronaut 512x512 MJPG, 30 fps (made on the fly)"}
