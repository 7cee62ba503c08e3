"""The streaming runtime: sources, capture, windows, the fast event and the streamed rationale.

``from migr_rt import Runtime``; events follow :mod:`migr_rt.runtime.events`.
Names are imported lazily, so parsing a source (``migr-rt run --camera 0``
on a machine without one) fails before torch is even imported.
"""

_EXPORTS = {
    "Runtime": "migr_rt.runtime.engine", "RuntimeConfig": "migr_rt.runtime.engine",
    "EVENT_SCHEMA": "migr_rt.runtime.events", "SCHEMA_VERSION": "migr_rt.runtime.events",
    "to_json": "migr_rt.runtime.events", "SourceError": "migr_rt.runtime.sources",
    "SourceSpec": "migr_rt.runtime.sources", "parse_source": "migr_rt.runtime.sources",
    "cameras": "migr_rt.runtime.devices", "microphones": "migr_rt.runtime.devices",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'migr_rt.runtime' has no attribute {name!r}")
