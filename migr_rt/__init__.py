"""migr-rt: an edge runtime for Modality-Importance-Guided Reasoning.

The package installs as one distribution; ``export/``, ``kernels/`` and
``training/`` from the repository are importable as ``migr_rt.export``,
``migr_rt.kernels`` and ``migr_rt.training``.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``from migr_rt import Runtime`` without importing torch for ``migr-rt --help``.
    if name in ("Runtime", "RuntimeConfig"):
        from migr_rt import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'migr_rt' has no attribute {name!r}")
