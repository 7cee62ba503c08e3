"""The machine a benchmark ran on: description, package versions, memory readings, copy bandwidth."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import subprocess
import time
from pathlib import Path

import numpy as np

#: The source checkout this package runs from (when it does: benchmarks/ lives there, not in a wheel).
REPO = Path(__file__).resolve().parents[2]

DISTRIBUTIONS = ("torch", "transformers", "numpy", "av", "opencv-python-headless", "onnx", "onnxruntime",
                 "onnxruntime-gpu", "tensorrt", "matplotlib", "click")


# -- description ------------------------------------------------------------------------------------------
def _cpuinfo_field(name: str) -> str | None:
    """The first ``name`` line's value in ``/proc/cpuinfo`` (Linux), or None where there is none."""
    try:
        with open("/proc/cpuinfo") as fh:
            return next((line.partition(":")[2].strip() for line in fh if line.startswith(name)), None)
    except OSError:
        return None


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags (x86 ``/proc/cpuinfo``), or None where that file lists none."""
    line = _cpuinfo_field("flags")
    return set(line.split()) if line is not None else None


def machine_info() -> dict:
    """CPU, cores, threads, Python/torch versions, platform, GPU and git commit: recorded with every benchmark."""
    import torch

    cpu = _cpuinfo_field("model name")
    if cpu is None:
        cpu = platform.processor() or ""
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "commit": git_commit()}


def git_commit(repo: Path = REPO) -> str:
    """``repo``'s commit (``+uncommitted`` with code changes); for this checkout, ``MIGR_RT_COMMIT`` where there is
    no git."""
    if repo == REPO and os.environ.get("MIGR_RT_COMMIT"):
        return os.environ["MIGR_RT_COMMIT"]
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=repo, capture_output=True, text=True,  # noqa: E731
                                        check=True, timeout=10).stdout.strip()
        commit = run("rev-parse", "--short", "HEAD")
        # benchmark outputs written by an earlier run are not code changes
        changed = run("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results")
        return commit + ("+uncommitted" if changed else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    """Installed versions of the packages a measurement depends on (absent ones left out)."""
    out = {"python": platform.python_version()}
    for name in DISTRIBUTIONS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def cache_sizes() -> dict[str, int]:
    """Bytes of the L2 and last-level caches of CPU 0 (from sysfs; empty where unknown)."""
    sizes: dict[str, int] = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")) if base.is_dir() else []:
        try:
            kind = (index / "type").read_text().strip()
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1], 1)
        size = int(text.rstrip("KMG")) * scale
        sizes[f"L{level}"] = size
    if sizes:
        sizes["LLC"] = sizes[f"L{max(int(k[1:]) for k in sizes)}"]
    return sizes


# -- memory -----------------------------------------------------------------------------------------------
def _status_kb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float | None:
    """Resident memory of this process now (MB)."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def hwm_mb() -> float | None:
    """Peak resident memory since the last :func:`reset_peak` (or the start), in MB (Linux ``VmHWM``)."""
    kb = _status_kb("VmHWM")
    return None if kb is None else kb / 1024


def reset_peak() -> bool:
    """Restart ``VmHWM`` at the current RSS (Linux ``clear_refs`` 5); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def process_peak_rss_mb() -> float:
    """Peak resident memory of the whole process so far (``getrusage``; never reset), MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- bandwidth --------------------------------------------------------------------------------------------
def copy_bandwidth(nbytes: int, repeats: int = 5, min_seconds: float = 0.02) -> dict:
    """Best-of-``repeats`` bandwidth of ``np.copyto`` between two ``nbytes`` buffers (one thread).

    Bytes moved count the read and the write (``2 * nbytes`` per copy, the
    STREAM "copy" convention). Small buffers are copied many times per
    sample (at least ``min_seconds``), so they stay resident in whatever
    cache holds them.
    """
    n = max(1, nbytes // 8)
    src = np.ones(n, dtype=np.float64)
    dst = np.zeros(n, dtype=np.float64)  # both touched: page faults are not timed
    np.copyto(dst, src)
    inner = 1
    while True:  # calibrate copies per sample
        t0 = time.perf_counter()
        for _ in range(inner):
            np.copyto(dst, src)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds or inner >= 1 << 20:
            break
        inner *= 2
    best = elapsed / inner
    for _ in range(max(0, repeats - 1)):
        t0 = time.perf_counter()
        for _ in range(inner):
            np.copyto(dst, src)
        best = min(best, (time.perf_counter() - t0) / inner)
    return {"buffer_bytes": int(n * 8), "gb_per_s": 2 * n * 8 / best / 1e9, "copies_per_sample": inner,
            "repeats": repeats, "threads": 1}


def bandwidths(dram_bytes: int = 512 * 2**20, repeats: int = 5) -> dict:
    """Copy bandwidth from DRAM (a buffer far larger than the LLC) and from the L2 and last-level caches.

    Cache-resident sizes: source plus destination fill half of that cache
    (so the two buffers stay in it between copies).
    """
    caches = cache_sizes()
    out = {"dram": {**copy_bandwidth(dram_bytes, repeats=repeats), "what": "buffer far larger than the LLC"}}
    for level in ("L2", "LLC"):
        if level in caches and caches[level] >= 64 * 1024:
            size = caches[level] // 4
            out[level] = {**copy_bandwidth(size, repeats=max(repeats, 5)),
                          "what": f"buffer of 1/4 of the {level} ({caches[level] // 1024} KiB), resident in it"}
    out["caches_bytes"] = caches
    return out


def gpu_bandwidth(nbytes: int, device: str = "cuda", repeats: int = 20) -> dict:
    """Best-of-``repeats`` device-to-device copy bandwidth of GPU memory (torch ``copy_``, CUDA events).

    Counted as :func:`copy_bandwidth` counts (read + write). Buffers far larger than the GPU's L2 make this the
    memory (HBM) bandwidth a decode step streams its weights at; a small decoder's weights may instead stay in
    L2, so its steps can run below this bound.
    """
    import torch

    n = max(1, nbytes // 4)
    with torch.cuda.device(device):  # the events record on this device's stream, where the copies run
        src = torch.ones(n, dtype=torch.float32, device=device)
        dst = torch.empty_like(src)
        dst.copy_(src)
        torch.cuda.synchronize(device)
        best = float("inf")
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            dst.copy_(src)
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3)
        del src, dst
        torch.cuda.empty_cache()
    return {"buffer_bytes": int(n * 4), "gb_per_s": 2 * n * 4 / best / 1e9, "repeats": repeats,
            "what": "GPU memory: device-to-device copy of a buffer far larger than the L2"}
