"""migr-rt: an edge runtime for Modality-Importance-Guided Reasoning.

The package installs as one distribution; ``export/``, ``kernels/`` and
``training/`` from the repository are importable as ``migr_rt.export``,
``migr_rt.kernels`` and ``migr_rt.training``.
"""

__version__ = "0.1.0"
