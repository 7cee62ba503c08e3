"""Resolve a ``--data`` argument to clips: a synthetic corpus or a real dataset spec."""

from __future__ import annotations

from collections.abc import Iterator, Sized
from pathlib import Path
from typing import Protocol

from migr_rt.media import Clip


class ClipSource(Sized, Protocol):
    """Anything with ``len()`` that iterates :class:`~migr_rt.media.Clip` records."""

    def __iter__(self) -> Iterator[Clip]: ...


def open_clips(spec: str | Path) -> ClipSource:
    """``spec`` is a synthetic corpus (its folder or ``manifest.jsonl``) or a dataset spec like ``dfew:/data/DFEW?fold=1``.

    A path that exists and holds a manifest is a synthetic corpus; anything
    else goes to :func:`migr_rt.training.data.open_dataset`, which names the
    dataset formats it knows when it cannot place the spec.
    """
    path = Path(spec)
    if path.is_file() and path.suffix == ".jsonl":
        from migr_rt.training.synth.reader import SynthCorpus

        return SynthCorpus(path)
    if path.is_dir() and (path / "manifest.jsonl").is_file():
        from migr_rt.training.synth.reader import SynthCorpus

        return SynthCorpus(path / "manifest.jsonl")
    from migr_rt.training.data import open_dataset

    return open_dataset(str(spec))
