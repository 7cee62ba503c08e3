"""Reliability soak: the streaming runtime on the looping demo in real time, for minutes.

Not part of ``make test``: run it with ``make test-soak`` (or
``pytest -m soak tests/test_reliability_soak.py``). ``MIGR_SOAK_SECONDS``
sets the duration (default 120); ``MIGR_SOAK_BACKEND`` the backend:
``auto`` (default: onnxruntime on the bundled model's fp32 ONNX artifact when
one that matches its weights is available, at ``MIGR_SOAK_ARTIFACT`` or
``runs/artifacts/default-fp32`` as ``migr-rt bench`` and the runtime
benchmark leave it; else torch on the checkpoint), ``torch`` or
``onnxruntime`` (exports the artifact first if none is available);
``MIGR_SOAK_RATIONALE=0`` turns rationales off.

After a warm-up (a fifth of the run, at least 15 s) it asserts:

* resident memory is flat: the peak over the last 15 s is at most 5 MB
  above the peak over the first 15 s after the warm-up (``/proc/self/statm``);
* nothing queues up: no frame or window is dropped, at most
  ``max_pending_windows`` (2) windows are ever closed but not yet analysed,
  and the number of threads and open file descriptors stays constant;
* the window events keep the source's pace: their rate over the run is
  within 5% of 1 / hop.

The numbers are printed (``-s`` shows them) and written to
``$MIGR_SOAK_REPORT`` when set.
"""

from __future__ import annotations

import json
import os
import resource
import threading
import time
from pathlib import Path

import pytest

from migr_rt.runtime import Runtime, RuntimeConfig, parse_source

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif("'soak' not in config.getoption('markexpr', '')",
                       reason="soak test: run with `make test-soak` or `pytest -m soak` (MIGR_SOAK_SECONDS=120)"),
]

PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def matching_artifact() -> Path | None:
    """The bundled model's fp32 ONNX artifact, if a current export of its weights is on disk."""
    from migr_rt.export.onnx_export import is_current_export

    from migr_rt.artifact import is_artifact, read_manifest, sha256_of
    from migr_rt.bundled import default_checkpoint

    folder = Path(os.environ.get("MIGR_SOAK_ARTIFACT") or Path(__file__).parents[1] / "runs/artifacts/default-fp32")
    weights = sha256_of(default_checkpoint() / "model.safetensors")
    if is_artifact(folder) and is_current_export(read_manifest(folder), weights, "fp32"):
        return folder
    return None


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)  # noqa: E731
    return {"n": len(ordered), "p50": pick(0.5), "p99": pick(0.99), "max": round(ordered[-1], 2)}


def test_stream_soak_memory_queues_and_rate(tmp_path):
    seconds = float(os.environ.get("MIGR_SOAK_SECONDS", "120"))
    backend = os.environ.get("MIGR_SOAK_BACKEND", "auto")
    model = None
    if backend in ("auto", "onnxruntime"):
        model = matching_artifact()
        if model is None and backend == "onnxruntime":
            from migr_rt.export.onnx_export import export_onnx
            from migr_rt.bundled import default_checkpoint

            model = tmp_path / "default-fp32"
            export_onnx(default_checkpoint(), model, "fp32")
        backend = "onnxruntime" if model is not None else "torch"
    rationale = os.environ.get("MIGR_SOAK_RATIONALE", "1") != "0"
    warmup = max(15.0, seconds / 5)
    probe = 15.0
    assert seconds >= warmup + 2 * probe, f"MIGR_SOAK_SECONDS={seconds}: needs at least {warmup + 2 * probe:.0f} s"

    config = RuntimeConfig(hop=0.5, rationale=rationale)
    spec = parse_source("demo", realtime=True, loop=True)
    stop = threading.Event()
    samples: list[tuple[float, int]] = []  # (seconds since start, rss)
    window_times: list[float] = []
    max_pending = 0
    counts = {"window": 0, "rationale": 0, "cancelled": 0, "status": 0}
    fast_ms: list[float] = []  # window close -> window event
    first_token_ms: list[float] = []
    statuses: list[str] = []
    threads = fds = None
    last_drops: dict = {}
    first_drop: dict | None = None
    with Runtime(model, config, backend=backend) as rt:
        described = rt.backend.describe()
        start = time.monotonic()
        for event in rt.stream(spec, stop=stop):
            now = time.monotonic() - start
            kind = event["type"]
            if kind == "window":
                counts["window"] += 1
                window_times.append(now)
                last_drops = event["drops"]
                fast_ms.append(event["latency_ms"]["total"])
                # closed, not dropped, not yet analysed: the windows queued behind this one
                max_pending = max(max_pending, last_drops["windows_seen"] - last_drops["windows"] - counts["window"])
                if first_drop is None and (last_drops["frames"] or last_drops["windows"]):
                    first_drop = {"at_s": round(now, 1), **last_drops}
            elif kind == "rationale":
                counts["rationale"] += 1
                counts["cancelled"] += bool(event["cancelled"])
                if event["latency_ms"]["first_token"] is not None:
                    first_token_ms.append(event["latency_ms"]["first_token"])
            elif kind == "status":
                counts["status"] += 1
                statuses.append(f"{event['level']} {event['code']}: {event['message']}")
            if not samples or now - samples[-1][0] >= 0.5:
                samples.append((now, rss_bytes()))
            if threads is None and now >= warmup:
                threads, fds = threading.active_count(), open_fds()
            if now >= seconds:
                stop.set()
        end = event
        elapsed = time.monotonic() - start
        threads_end, fds_end = threading.active_count(), open_fds()

    after = [(t, r) for t, r in samples if t >= warmup]
    first = max(r for t, r in after if t < warmup + probe)
    last = max(r for t, r in after if t >= seconds - probe)
    growth = last - first
    steady = [t for t in window_times if t >= warmup]
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    expected = 1 / config.hop
    report = {
        "seconds": round(elapsed, 1), "backend": described, "rationale": rationale,
        "windows": counts["window"], "rationales": counts["rationale"], "rationales_cancelled": counts["cancelled"],
        "status_events": statuses, "end": {"reason": end.get("reason"), "drops": end.get("drops")},
        "latency_ms": {"window_event": percentiles(fast_ms), "first_rationale_token": percentiles(first_token_ms)},
        "first_drop": first_drop, "max_windows_pending": max_pending, "window_rate_hz": round(rate, 4), "expected_rate_hz": expected,
        "rss_mb": {"after_warmup_peak": round(first / MB, 2), "final_peak": round(last / MB, 2),
                   "growth": round(growth / MB, 3), "min": round(min(r for _, r in after) / MB, 2),
                   "max": round(max(r for _, r in after) / MB, 2)},
        "max_rss_mb_kernel": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": [threads, threads_end], "fds": [fds, fds_end],
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }
    print("\nsoak:", json.dumps(report, indent=1))
    if os.environ.get("MIGR_SOAK_REPORT"):
        Path(os.environ["MIGR_SOAK_REPORT"]).write_text(json.dumps(report, indent=1) + "\n")

    assert end["type"] == "end" and end["reason"] == "interrupted", end
    assert not statuses, statuses
    assert first_drop is None and end["drops"]["frames"] == 0 and end["drops"]["windows"] == 0, report
    assert max_pending <= config.max_pending_windows, report
    assert end["drops"]["windows_seen"] - end["drops"]["windows"] - counts["window"] <= config.max_pending_windows, report
    assert growth <= 5 * MB, f"resident memory grew {growth / MB:.2f} MB after warm-up: {report['rss_mb']}"
    assert abs(rate - expected) <= 0.05 * expected, f"window events at {rate:.3f}/s, expected {expected}/s"
    assert fds_end <= fds and threads_end <= threads, report
