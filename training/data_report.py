"""What a ``--data`` argument holds, checked before a long training run spends an hour on it.

Indexing is cheap (annotations and file names, no decoding), so the default
report costs seconds even for DFEW's 16k clips: clip and label counts, what
was skipped and why, and how many clips have the per-modality descriptions
the baseline/MIGR recipes need. ``decode=True`` also decodes every clip, the
only way to find corrupt or stream-less files before training does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from migr_rt.training.data.reader import DatasetReader
from migr_rt.training.data.records import SkipLog
from migr_rt.training.judge import described_cues
from migr_rt.training.sources import DataSource
from migr_rt.training.synth.reader import SynthCorpus

from migr_rt.labels import MODALITIES
from migr_rt.media import MediaError


@dataclass
class DataReport:
    """Counts of one data source; ``decoded`` is None unless every clip was decoded."""

    description: str
    clips: int
    labels: tuple[str, ...]
    label_counts: dict[str, int]
    #: clips whose every modality has a known description (they can train a reasoning trace)
    described: int
    #: clips with some descriptions but an unknown one (they train a trace only where that modality is hidden)
    partly_described: int
    #: described clips whose descriptions the cue judge can read (grounding, coverage, consistency apply)
    vocabulary_described: int
    skipped: dict[str, int] = field(default_factory=dict)
    skip_messages: dict[str, list[str]] = field(default_factory=dict)
    decoded: int | None = None
    fingerprint: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def indexed_clips(source: DataSource) -> Iterator[tuple[str, str, dict[str, str | None]]]:
    """Each clip's id, label and descriptions, from the index alone (nothing decoded)."""
    clips = source.clips
    if isinstance(clips, DatasetReader):
        for entry in clips.entries:
            yield entry.clip_id, entry.label, {m: entry.meta.get(f"{m}_text") for m in MODALITIES}
    elif isinstance(clips, SynthCorpus):
        for record in clips.records:
            yield record["id"], record["label"], {m: record.get(f"{m}_text") for m in MODALITIES}
    else:
        raise TypeError(f"cannot report on a {type(clips).__name__} source without decoding it")


def _decode_all(source: DataSource, skips: SkipLog, progress: Callable[[int, int], None] | None) -> int:
    """Decode every clip; return how many decoded. Failures land in ``skips`` (the reader's own, for datasets)."""
    clips = source.clips
    total = len(clips)
    done = ok = 0
    if isinstance(clips, DatasetReader):  # the reader counts its own failures under its error policy
        for _ in clips.iter_clips():
            ok += 1
            done += 1
            if progress is not None:
                progress(done, total)
        return ok
    for i in range(total):
        try:
            clips[i]
            ok += 1
        except MediaError as exc:
            skips.add("corrupt_media", str(i), str(exc))
        done += 1
        if progress is not None:
            progress(done, total)
    return ok


def data_report(
    source: DataSource, *, decode: bool = False, progress: Callable[[int, int], None] | None = None
) -> DataReport:
    """Summarise ``source`` (see the module docstring); ``progress(done, total)`` is called while decoding."""
    counts: Counter[str] = Counter()
    described = partly = vocabulary = 0
    for _, label, texts in indexed_clips(source):
        counts[label] += 1
        known = [t is not None for t in texts.values()]
        if all(known):
            described += 1
            vocabulary += described_cues(texts) is not None
        elif any(known):
            partly += 1
    skips = source.clips.skip_log if isinstance(source.clips, DatasetReader) else SkipLog()
    decoded = _decode_all(source, skips, progress) if decode else None
    return DataReport(
        description=source.description,
        clips=len(source.clips),
        labels=tuple(source.labels),
        label_counts={lab: counts.get(lab, 0) for lab in source.labels},
        described=described,
        partly_described=partly,
        vocabulary_described=vocabulary,
        skipped=skips.counts,
        skip_messages=skips.messages,
        decoded=decoded,
        fingerprint=source.fingerprint,
    )
