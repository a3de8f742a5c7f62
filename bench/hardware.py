"""What the numbers were measured on, and how fast this machine reads memory."""

from __future__ import annotations

import os
import platform
import time

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_details() -> dict:
    """Family/model numbers and the vector extensions that matter here (a VM may hide the name)."""
    out: dict = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key in ("cpu family", "model", "stepping") and key not in out:
                    out[key.replace(" ", "_")] = value
                elif key == "flags" and "flags" not in out:
                    have = set(value.split())
                    out["flags"] = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8") if f in have]
    except OSError:
        pass
    return out


def cache_bytes() -> int | None:
    """Size of the last-level cache, from sysfs (None when unknown)."""
    best = None
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in os.listdir(base):
            path = os.path.join(base, entry, "size")
            if os.path.exists(path):
                text = open(path).read().strip()
                mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1], 1)
                size = int(text.rstrip("KMG")) * mult
                best = size if best is None else max(best, size)
    except OSError:
        return None
    return best


def hardware(device: str = "cpu") -> dict:
    info = {
        "cpu": cpu_model(),
        "cpu_details": cpu_details(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "last_level_cache_mb": (cache_bytes() or 0) / 2**20,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "load_average_1min_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if device == "cuda" and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update({
            "gpu": p.name,
            "gpu_memory_gb": round(p.total_memory / 2**30, 1),
            "gpu_sms": p.multi_processor_count,
            "cuda": torch.version.cuda,
        })
    return info


class BandwidthProbe:
    """Read bandwidth of a buffer far larger than the last-level cache (fp32 ``sum``).

    The buffer is written once so that its pages are real (an untouched buffer reads the
    shared zero page, and would look impossibly fast). On CUDA it is a device buffer.
    """

    def __init__(self, device: str = "cpu", nbytes: int | None = None) -> None:
        self.device = device
        if nbytes is None:
            llc = cache_bytes() or 32 * 2**20
            nbytes = max(512 * 2**20, 16 * llc) if device == "cpu" else 2 * 2**30
        self.buf = torch.ones(nbytes // 4, device=device)
        self.nbytes = self.buf.numel() * 4

    def __call__(self) -> torch.Tensor:
        return self.buf.sum()

    def gbs(self, seconds: float) -> float:
        return self.nbytes / seconds / 1e9

    def measure(self, repeats: int = 5) -> float:
        best = float("inf")
        for _ in range(repeats):
            if self.device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            self()
            if self.device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
        return self.gbs(best)
