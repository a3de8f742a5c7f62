import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _shared_mocap() -> Path:
    env = os.environ.get("POSELIFT_MOCAP")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "mocap" / "cmu"


@pytest.fixture(scope="session")
def mocap_dir() -> Path:
    path = _shared_mocap()
    if not path.is_dir():
        pytest.skip(f"shared mocap data not found at {path} (set POSELIFT_MOCAP)")
    return path


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """Services under test set torch's thread count; restore it so tests do not leak it."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
