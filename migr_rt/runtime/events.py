"""The events the streaming runtime emits: one versioned schema for the Python API and ``--json``.

Every event is a flat JSON object with ``schema`` (``"migr-rt.event"``),
``version`` (:data:`SCHEMA_VERSION`), ``type`` and ``time`` (wall clock,
Unix seconds). Types, in the order a run produces them:

``start``
    backend, source, window/hop seconds, fps, sample rate, labels, modalities,
    ``has_video``/``has_audio`` (which streams the source has), ``realtime``
    (paced with drops like a camera, or a lossless replay).
``window`` (the fast event, per analysed window)
    ``window`` (index), ``t_start``/``t_end`` (media seconds), ``label``
    (null when there is no evidence at all), ``probs``, ``mi``,
    ``importance``, ``dominant``, ``present`` (per modality), ``missing``
    (why a modality is absent: ``no_video``, ``no_face``, ``no_audio``,
    ``silent``), ``padded_seconds`` (per modality with a stream: how much of
    the window lay past that stream's end, its last frame held or silence;
    ``t_end`` stays the nominal end), ``face`` (``box`` ``[x, y, w, h]`` of
    the newest sampled frame or null, ``frames_with_face`` of
    ``frames_sampled``), ``latency_ms``
    (``face``, ``encode``, ``mi``, ``total``: window close -> this event) and
    ``drops`` (``frames``, ``windows``, ``captured_frames``, ``windows_seen``).
``rationale_token``
    ``window``, ``index``, ``text`` (the new text, concatenation gives the rationale).
``rationale``
    ``window``, ``text``, ``segments`` (per modality; the summary is only in
    ``text``), ``first_modality``, ``answer`` (the window's ``label`` unless the
    runtime keeps the model's own), ``model_answer`` (what the model wrote or
    would have written there), ``explanation_emotion`` (what the explanation's
    cue statements argue for, by the runtime's judge), ``consistent`` (whether
    that is ``answer``; null when unknown), ``tokens``, ``cancelled`` (a newer
    window made it stale), ``latency_ms`` (``first_token`` after the fast
    event, ``full``).
``status``
    ``level`` (info/warning/error), ``code`` (``source_lost``,
    ``reconnecting``, ``reconnected``, ``cover_art``), ``message``.
``end``
    ``reason`` (``end_of_stream``, ``interrupted``, ``source_lost``), ``windows``, ``drops``.

:data:`EVENT_SCHEMA` is the JSON Schema of all of them (draft 2020-12);
``docs/events.md`` documents it with examples. A change that would make a
reader of this version misread an event bumps :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

import json
import time
from typing import Any

SCHEMA = "migr-rt.event"
#: 2: ``rationale.answer`` is the window's label by default; ``model_answer``, ``explanation_emotion`` and
#: ``consistent`` added
SCHEMA_VERSION = 2
EVENT_TYPES = ("start", "window", "rationale_token", "rationale", "status", "end")
MISSING_REASONS = ("no_video", "no_face", "no_audio", "silent")


def make_event(kind: str, **fields: Any) -> dict[str, Any]:
    """A new event dict of ``kind`` with the common header."""
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown event type {kind!r}")
    return {"schema": SCHEMA, "version": SCHEMA_VERSION, "type": kind, "time": time.time(), **fields}


def to_json(event: dict[str, Any]) -> str:
    """One JSON line (no NaN: non-finite floats become null)."""
    return json.dumps(_finite(event), sort_keys=True, separators=(",", ":"))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STR_OR_NULL = {"type": ["string", "null"]}
_PER_NAME = {"type": "object", "additionalProperties": _NUM}
_DROPS = {
    "type": "object",
    "required": ["frames", "windows", "captured_frames", "windows_seen"],
    "properties": {k: {"type": "integer", "minimum": 0} for k in ("frames", "windows", "captured_frames", "windows_seen")},
}
_HEADER = {
    "schema": {"const": SCHEMA},
    "version": {"const": SCHEMA_VERSION},
    "time": _NUM,
}


def _event(kind: str, required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["schema", "version", "type", "time", *required],
        "properties": {**_HEADER, "type": {"const": kind}, **properties},
    }


EVENT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"https://migr-rt/schemas/event/{SCHEMA_VERSION}",
    "title": "migr-rt runtime event",
    "oneOf": [
        _event("start", ["backend", "source", "window_seconds", "hop_seconds", "fps", "sample_rate", "labels",
                         "modalities"], {
            "backend": {"type": "string"}, "source": {"type": "string"}, "window_seconds": _NUM,
            "hop_seconds": _NUM, "fps": _NUM, "sample_rate": {"type": "integer"},
            "labels": {"type": "array", "items": {"type": "string"}},
            "modalities": {"type": "array", "items": {"type": "string"}},
            "has_video": {"type": "boolean"}, "has_audio": {"type": "boolean"}, "realtime": {"type": "boolean"},
        }),
        _event("window", ["window", "t_start", "t_end", "label", "probs", "mi", "importance", "dominant", "present",
                          "missing", "face", "latency_ms", "drops"], {
            "window": {"type": "integer", "minimum": 0}, "t_start": _NUM, "t_end": _NUM,
            "label": _STR_OR_NULL, "probs": _PER_NAME, "mi": _PER_NAME, "importance": _PER_NAME,
            "dominant": _STR_OR_NULL,
            "present": {"type": "object", "additionalProperties": {"type": "boolean"}},
            "missing": {"type": "object", "additionalProperties": {"enum": list(MISSING_REASONS)}},
            # not required: added within version 2 (a new field alone is not a change readers would misread)
            "padded_seconds": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}},
            "face": {"type": "object", "required": ["box", "frames_with_face", "frames_sampled"], "properties": {
                "box": {"type": ["array", "null"], "items": {"type": "integer"}, "minItems": 4, "maxItems": 4},
                "frames_with_face": {"type": "integer", "minimum": 0},
                "frames_sampled": {"type": "integer", "minimum": 0}}},
            "latency_ms": {"type": "object", "required": ["total"], "additionalProperties": _NUM},
            "drops": _DROPS,
        }),
        _event("rationale_token", ["window", "index", "text"], {
            "window": {"type": "integer", "minimum": 0}, "index": {"type": "integer", "minimum": 0},
            "text": {"type": "string"},
        }),
        _event("rationale", ["window", "text", "segments", "first_modality", "answer", "model_answer",
                             "explanation_emotion", "consistent", "tokens", "cancelled", "latency_ms"], {
            "window": {"type": "integer", "minimum": 0}, "text": {"type": "string"},
            "segments": {"type": "object", "additionalProperties": {"type": "string"}},
            "first_modality": _STR_OR_NULL, "answer": _STR_OR_NULL, "model_answer": _STR_OR_NULL,
            "explanation_emotion": _STR_OR_NULL, "consistent": {"type": ["boolean", "null"]},
            "tokens": {"type": "integer", "minimum": 0}, "cancelled": {"type": "boolean"},
            "latency_ms": {"type": "object", "properties": {"first_token": _NUM_OR_NULL, "full": _NUM}},
        }),
        _event("status", ["level", "code", "message"], {
            "level": {"enum": ["info", "warning", "error"]}, "code": {"type": "string"},
            "message": {"type": "string"},
        }),
        _event("end", ["reason", "windows", "drops"], {
            "reason": {"enum": ["end_of_stream", "interrupted", "source_lost"]},
            "windows": {"type": "integer", "minimum": 0}, "drops": _DROPS,
        }),
    ],
}
