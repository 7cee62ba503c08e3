"""Bounded expressive parameter vectors (face expression, voice prosody).

Face and voice declare their expressive parameters as frozen dataclasses whose
fields carry a value range. Evidence is applied to any such vector the same way
(``neutral + strength * (prototype - neutral) + distractor``, then clipped), and
cue descriptions read the same fields, so one declaration drives rendering,
blending and description.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

P = TypeVar("P")


def param(lo: float, hi: float) -> Any:
    """A float field with neutral value 0 and allowed range ``[lo, hi]``."""
    if not lo <= 0.0 <= hi:
        raise ValueError(f"range [{lo}, {hi}] must contain the neutral value 0")
    return dataclasses.field(default=0.0, metadata={"range": (float(lo), float(hi))})


def param_ranges(cls: type) -> dict[str, tuple[float, float]]:
    """Field name -> (lo, hi) for a parameter dataclass, in declaration order."""
    return {f.name: f.metadata["range"] for f in dataclasses.fields(cls)}


def as_dict(params: Any) -> dict[str, float]:
    """The parameter values by field name."""
    return {f.name: float(getattr(params, f.name)) for f in dataclasses.fields(params)}


def from_mapping(cls: type[P], values: Mapping[str, float]) -> P:
    """Build a parameter vector from a (partial) mapping; missing fields are neutral, values are clipped."""
    ranges = param_ranges(cls)
    unknown = set(values) - set(ranges)
    if unknown:
        raise ValueError(f"{cls.__name__} has no parameters {sorted(unknown)}")
    return cls(**{k: float(np.clip(v, *ranges[k])) for k, v in values.items()})


def blend(prototype: P, strength: float, distractor: np.ndarray) -> P:
    """``neutral + strength * (prototype - neutral) + distractor``, clipped to each field's range.

    The neutral vector is all zeros, so weak evidence renders as a mostly
    neutral face or voice; ``distractor`` (one value per field) adds the small
    idiosyncratic deviations that keep weak clips from being perfectly blank.
    """
    cls = type(prototype)
    names = list(param_ranges(cls))
    distractor = np.asarray(distractor, dtype=float).reshape(-1)
    if distractor.shape != (len(names),):
        raise ValueError(f"distractor needs {len(names)} values for {cls.__name__}, got {distractor.shape}")
    values = {n: strength * getattr(prototype, n) + d for n, d in zip(names, distractor)}
    return from_mapping(cls, values)


def scaled(params: P, weight: float) -> P:
    """The vector moved a fraction ``weight`` of the way from neutral (used for onset ramps)."""
    return type(params)(**{k: v * weight for k, v in as_dict(params).items()})
