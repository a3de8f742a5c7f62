"""The real commands as separate processes: ``poselift serve`` and ``poselift listen`` talk."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from poselift.stream.client import KeypointSender
from tests.stream_helpers import HEIGHT, WIDTH, project, synthetic_poses, write_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poselift(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "poselift", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_serve_and_listen_processes_lossless(tmp_path):
    N = 40
    ckpt = write_checkpoint(tmp_path / "m.pt")
    pin, pout = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    serve = poselift("serve", "--lossless", "--input", pin, "--publish", pout, "--checkpoint", str(ckpt),
                     "--frames", str(N), "--device", "cpu")
    listen = poselift("listen", pout, "--lossless", "--count", str(N), "--json", "--no-status", "--timeout", "60")
    try:
        kp = project(synthetic_poses(N))
        tx = KeypointSender(pin, lossless=True, linger_ms=60_000)  # serve may take seconds to start on a busy machine
        for t in range(N):
            tx.send("cam0", t, kp[t], width=WIDTH, height=HEIGHT)
        tx.close()
        out, err = listen.communicate(timeout=90)
        s_out, s_err = serve.communicate(timeout=30)
    finally:
        for p in (serve, listen):
            if p.poll() is None:
                p.kill()
    assert listen.returncode == 0, err
    msgs = [json.loads(line) for line in out.splitlines()]
    assert [m["frame"] for m in msgs] == list(range(N)) and all(m["stream"] == "cam0" for m in msgs)
    assert serve.returncode == 0, s_err
    assert "input  PULL bound at" in s_out and f"received {N}, published {N}" in s_out


def test_the_cli_sets_the_thread_pools_before_torch_and_numpy_load():
    """libgomp reads OMP_WAIT_POLICY and OpenBLAS reads OPENBLAS_NUM_THREADS once, when torch
    and numpy load: the CLI sets PASSIVE and 1 before any handler imports either (spinning
    workers stall the loop's thread or burn a core on small machines), and an explicit
    setting wins."""
    import os
    import subprocess
    import sys

    code = ("import sys, os, poselift.cli; "
            "print(os.environ['OMP_WAIT_POLICY'], os.environ['OPENBLAS_NUM_THREADS'], "
            "'torch' in sys.modules, 'numpy' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["PASSIVE", "1", "False", "False"]
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE",
                                                            "OPENBLAS_NUM_THREADS": "2"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["ACTIVE", "2", "False", "False"]
