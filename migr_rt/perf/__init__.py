"""Benchmarks of the runtime on this machine (``migr-rt bench``): per-stage latency, peers, bounds.

Library code: it measures and returns dicts, reports progress through a
callback and never prints; the CLI and ``benchmarks/bench_report.py`` print.
Heavy imports (torch, the model) happen when a benchmark runs.
"""

_EXPORTS = {
    "BenchOptions": "migr_rt.perf.bench", "run_bench": "migr_rt.perf.bench", "STAGES": "migr_rt.perf.bench",
    "terminal_table": "migr_rt.perf.report", "markdown": "migr_rt.perf.report", "write_results": "migr_rt.perf.report",
    "Timed": "migr_rt.perf.timing", "time_rounds": "migr_rt.perf.timing", "sample_rounds": "migr_rt.perf.timing",
    "summary": "migr_rt.perf.timing",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'migr_rt.perf' has no attribute {name!r}")
