"""``poselift demo`` runs headless: a synthetic clip and a random checkpoint through the CLI,
clear errors when the bundled clip or weights are missing, and the real shipped defaults."""

import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from poselift.cli import main
from poselift.errors import UserError
from poselift.stream.sources import DEMO_CLIP, load_clip
from tests.stream_helpers import write_checkpoint, write_clip

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_cli_headless(tmp_path, capsys):
    clip = write_clip(tmp_path / "clip.npz", T=90)
    ckpt = write_checkpoint(tmp_path / "m.pt")
    out = tmp_path / "demo.gif"
    code = main(["demo", "--clip", str(clip), "--checkpoint", str(ckpt), "--out", str(out),
                 "--publish", "tcp://127.0.0.1:*", "--render-frames", "20", "--device", "cpu"])
    assert code == 0
    text = capsys.readouterr().out
    assert "p50" in text and "p99" in text and "FPS" in text and "MPJPE" in text
    assert out.exists() and out.stat().st_size > 1000
    from PIL import Image

    with Image.open(out) as im:
        assert im.n_frames == 18  # 90 frames, every 5th


def test_demo_publishes_to_a_listener(tmp_path):
    from poselift.stream.apps import run_demo, run_listen

    clip = write_clip(tmp_path / "clip.npz", T=40)
    ckpt = write_checkpoint(tmp_path / "m.pt")
    addr = f"tcp://127.0.0.1:{free_port()}"
    got = {}
    listener = threading.Thread(target=lambda: got.update(run_listen(addr, count=10, timeout=20, status=False,
                                                                     out=open(tmp_path / "log.txt", "w"))))
    listener.start()
    res = run_demo(clip=clip, checkpoint=ckpt, out=None, publish=addr, realtime=True, device="cpu")
    listener.join(25)
    assert res["published"] == 40 and res["endpoint"] == addr
    assert got["poses"] == 10
    assert res["poses"].shape == (40, 17, 3) and np.isfinite(res["poses"]).all()


def test_demo_missing_clip_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import poselift.stream.sources

    monkeypatch.setattr(poselift.stream.sources, "DEMO_CLIP", tmp_path / "missing.npz")
    ckpt = write_checkpoint(tmp_path / "m.pt")
    assert main(["demo", "--checkpoint", str(ckpt), "--no-render"]) == 2
    err = capsys.readouterr().err
    assert "bundled demo clip is missing" in err and "Traceback" not in err


def test_demo_missing_weights_is_a_clear_error(tmp_path, monkeypatch):
    import poselift.model.commands
    from poselift.stream.apps import run_demo

    monkeypatch.setattr(poselift.model.commands, "DEFAULT_WEIGHTS_DIR", tmp_path / "no-weights")
    clip = write_clip(tmp_path / "clip.npz", T=10)
    with pytest.raises(UserError, match="shipped causal model is missing"):
        run_demo(clip=clip, out=None, publish=None)


def test_bad_clip_and_device_errors(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, keypoints=np.zeros((5, 16, 2)), width=10, height=10)
    ckpt = write_checkpoint(tmp_path / "m.pt")
    assert main(["demo", "--clip", str(bad), "--checkpoint", str(ckpt), "--no-render"]) == 2
    assert "(T, 17, 2)" in capsys.readouterr().err
    if not torch.cuda.is_available():
        clip = write_clip(tmp_path / "clip.npz", T=5)
        assert main(["demo", "--clip", str(clip), "--checkpoint", str(ckpt), "--no-render", "--device", "cuda"]) == 2
        assert "CUDA" in capsys.readouterr().err


def test_every_stream_command_help_has_an_example(capsys):
    for cmd in ("demo", "webcam", "serve", "video", "listen"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert f"poselift {cmd}" in capsys.readouterr().out.split("example")[-1]


SHIPPED = ROOT / "model" / "weights" / "causal.pt"


@pytest.mark.skipif(not SHIPPED.exists(), reason=f"shipped weights {SHIPPED} not trained yet")
@pytest.mark.skipif(not DEMO_CLIP.exists(), reason=f"bundled demo clip {DEMO_CLIP} not created yet")
def test_demo_with_shipped_defaults(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--frames", "150", "--render-frames", "30", "--publish", "tcp://127.0.0.1:*"]) == 0
    text = capsys.readouterr().out
    assert "MPJPE" in text or load_clip(DEMO_CLIP).poses3d is None
    written = list(tmp_path.glob("poselift_demo.*"))
    assert written and written[0].stat().st_size > 1000


def test_live_plot_draws_off_screen():
    from poselift.stream.render import LivePlot
    from tests.stream_helpers import synthetic_poses

    view = LivePlot(interactive=False, max_fps=1000)
    try:
        for pose in synthetic_poses(3):
            assert view.update(pose, "frame")
    finally:
        view.close()
