"""A description of the machine and software a benchmark ran on, recorded with every result.

The benchmark scripts import it from here; it lives in :mod:`migr_rt.perf.system` so that
``migr-rt bench`` records the same fields.
"""

from migr_rt.perf.system import machine_info

__all__ = ["machine_info"]
