"""Resolve a ``--data`` argument to clips: a synthetic corpus or a real dataset spec.

A source also carries its label set (the model is built with it, so MAFW's
eleven classes train an eleven-class model), a fingerprint of its content
(the window cache is keyed by it, so a regenerated corpus in the same folder,
or an edited descriptions file, is never served stale windows) and the
description texts a fresh tokenizer should learn beside the cue vocabulary.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from migr_rt.labels import DFEW_LABELS, MODALITIES
from migr_rt.media import Clip

SOURCES = ("data is a synthetic corpus (its folder, holding manifest.jsonl, or that file) or a dataset: its folder, "
           "or a spec such as dfew:/data/DFEW?fold=1 (datasets: {})")


class ClipSource(Sized, Protocol):
    """Anything with ``len()`` that iterates :class:`~migr_rt.media.Clip` records."""

    def __iter__(self) -> Iterator[Clip]: ...


@dataclass
class DataSource:
    clips: ClipSource
    labels: tuple[str, ...]
    fingerprint: str  #: SHA-256 over what the source holds (manifest bytes, or indexed entries, file stats, descriptions)
    description: str
    #: a real dataset's per-clip cue descriptions, for tokenizer training (the synthetic corpus writes only
    #: vocabulary phrases, which the tokenizer learns anyway)
    texts: tuple[str, ...] = ()


def open_source(spec: str | Path) -> DataSource:
    """``spec`` is a synthetic corpus (its folder or ``manifest.jsonl``) or a dataset spec like ``dfew:/data/DFEW?fold=1``.

    A path that holds a manifest is a synthetic corpus; anything else goes to
    :func:`migr_rt.training.data.open_dataset`, which names the dataset
    formats it knows when it cannot place the spec.
    """
    path = Path(spec)
    manifest = path if path.is_file() and path.suffix == ".jsonl" else path / "manifest.jsonl"
    if manifest.is_file():
        from migr_rt.training.synth.reader import SynthCorpus

        corpus = SynthCorpus(manifest)
        info = manifest.parent / "corpus.json"
        labels = DFEW_LABELS
        if info.is_file():
            labels = tuple(json.loads(info.read_text()).get("config", {}).get("labels", DFEW_LABELS))
        digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
        return DataSource(corpus, labels, digest, f"synthetic corpus {manifest}")
    from migr_rt.training.data import open_dataset
    from migr_rt.training.data.errors import DatasetNotFoundError
    from migr_rt.training.data.registry import UnknownLayoutError, bare_root, known_datasets

    # A bare path is a corpus or a dataset folder: a wrong one says both, not only that no dataset fits.
    sources = SOURCES.format(known_datasets())
    root = bare_root(spec)
    if root is not None and not root.is_dir():
        what = "does not exist" if not root.exists() else "is a file, not a corpus manifest (manifest.jsonl)"
        raise DatasetNotFoundError(root, f"{what}; {sources}")
    try:
        reader = open_dataset(str(spec))
    except UnknownLayoutError:
        raise DatasetNotFoundError(root, f"holds no manifest.jsonl and matches no dataset's layout; {sources}") \
            from None
    entries, texts = [], []
    for e in reader.entries:
        stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in (e.video_path, e.audio_path) if p is not None]
        described = [e.meta.get(f"{m}_text") for m in MODALITIES]
        # undescribed entries hash as before descriptions existed, so their window caches stay valid
        entries.append([e.clip_id, e.label, stats, described] if any(t is not None for t in described)
                       else [e.clip_id, e.label, stats])
        texts.extend(t for t in described if t)
    digest = hashlib.sha256(json.dumps(entries).encode()).hexdigest()
    return DataSource(reader, tuple(reader.labels), digest, f"{reader.name} dataset {spec}", tuple(texts))
