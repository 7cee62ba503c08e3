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

from migr_rt.training.data.descriptions import DescriptionError, DuplicateDescriptionError
from migr_rt.training.data.reader import DatasetReader, media_error_kind
from migr_rt.training.data.records import SkipLog
from migr_rt.training.judge import described_cues, described_intensities
from migr_rt.training.lexicon import CueLexicon
from migr_rt.training.sources import DataSource
from migr_rt.training.synth.cues import LEXICON
from migr_rt.training.synth.reader import SynthCorpus

from migr_rt.labels import MODALITIES
from migr_rt.media import MediaError


#: skip reasons that name a descriptions-file line, not a clip
DESCRIPTION_PROBLEMS = (DescriptionError.kind, DuplicateDescriptionError.kind)


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
    #: described clips whose descriptions ``lexicon`` can read (grounding, coverage, consistency apply)
    vocabulary_described: int
    #: clips (or annotation rows) left out, by reason, and an example message of each
    skipped: dict[str, int] = field(default_factory=dict)
    skip_messages: dict[str, list[str]] = field(default_factory=dict)
    #: descriptions-file lines left out, by reason: the clip stays, without that description
    description_lines_skipped: dict[str, int] = field(default_factory=dict)
    description_messages: dict[str, list[str]] = field(default_factory=dict)
    decoded: int | None = None
    fingerprint: str = ""
    #: the lexicon the descriptions were read with (its repr: name, cue count, digest)
    lexicon: str = ""
    #: one described clip the lexicon cannot read, as ``{"clip_id", "visual", "audio"}`` (None: all readable)
    unreadable_example: dict | None = None
    #: cue statements in the described clips' descriptions that are negated ("no lowered brows": not shown)
    negated_statements: int = 0
    #: per modality, the most frequent clauses the lexicon does not read, as ``[words, clips]`` (what to add to
    #: it), most clips first and ties in alphabetical order; negated clauses count too
    unread_words: dict[str, list] = field(default_factory=dict)
    #: readable clips that give at least one cue's strength with an intensity word (the intensity reward applies)
    strength_described: int = 0

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


#: How many unread clauses per modality a report lists.
UNREAD_SHOWN = 8


@dataclass(frozen=True)
class LexiconCoverage:
    """How many described clips a lexicon reads the cues of, and one it cannot read (to show the user)."""

    described: int
    readable: int
    unreadable_example: dict | None
    #: negated cue statements in those descriptions (read as not shown)
    negated: int = 0
    #: per modality, the clauses it leaves unread (:meth:`CueLexicon.unread`) -> in how many clips
    unread: dict[str, Counter] = field(default_factory=dict)
    #: readable clips stating at least one cue's strength (:func:`~.judge.described_intensities`)
    strength_known: int = 0

    def most_unread(self, n: int = UNREAD_SHOWN) -> dict[str, list]:
        """The ``n`` most frequent unread clauses per modality as ``[words, clips]``, most frequent first."""
        return {m: [[words, k] for words, k in sorted(counts.items(), key=lambda wk: (-wk[1], wk[0]))[:n]]
                for m, counts in self.unread.items()}


def lexicon_coverage(source: DataSource, lexicon: CueLexicon) -> LexiconCoverage:
    """Read every fully described clip's descriptions with ``lexicon`` (index only, nothing decoded)."""
    described = readable = negated = strengths = 0
    example = None
    unread: dict[str, Counter] = {m: Counter() for m in MODALITIES}
    # Clauses said on their own in a modality's descriptions: "A and B" with such a piece is a list, not one
    # expression ("salt and pepper hair"), so it is counted as its pieces (CueLexicon.unread).
    alone: dict[str, set[str]] = {m: set() for m in MODALITIES}
    clips = [(clip_id, texts, {m: lexicon.unread_clauses(text) for m, text in texts.items()})
             for clip_id, _, texts in indexed_clips(source) if all(t is not None for t in texts.values())]
    for _, _, clauses in clips:
        for modality, found in clauses.items():
            alone[modality].update(whole for whole, pieces in found if len(pieces) == 1)
    for clip_id, texts, clauses in clips:
        described += 1
        negated += sum(st.negated for text in texts.values() for st in lexicon.statements(text))
        for modality, found in clauses.items():
            # a clip counts once per clause
            unread[modality].update(list(dict.fromkeys(lexicon.unread_of(found, alone[modality]))))
        if described_cues(texts, lexicon) is not None:
            readable += 1
            strengths += bool(described_intensities(texts, lexicon))
        elif example is None:
            example = {"clip_id": clip_id, **texts}
    return LexiconCoverage(described, readable, example, negated, unread, strengths)


def _decode_all(source: DataSource, skips: SkipLog, progress: Callable[[int, int], None] | None) -> int:
    """Decode every clip and return how many decoded; every failure is recorded in ``skips``.

    Clips are loaded one by one (``load`` always raises), so ``on_error="raise"`` does not stop the
    check at the first bad file: finding all of them is the point.
    """
    clips = source.clips
    load = clips.load if isinstance(clips, DatasetReader) else clips.__getitem__
    total = len(clips)
    ok = 0
    for i, (clip_id, _, _) in enumerate(indexed_clips(source)):
        try:
            load(i)
            ok += 1
        except MediaError as exc:
            skips.add(media_error_kind(exc), clip_id, str(exc))
        except OSError as exc:  # a synthetic clip that cannot be read at all (permissions, I/O)
            skips.add("corrupt_media", clip_id, f"{exc.__class__.__name__}: {exc}")
        if progress is not None:
            progress(i + 1, total)
    return ok


def data_report(
    source: DataSource,
    *,
    decode: bool = False,
    progress: Callable[[int, int], None] | None = None,
    lexicon: CueLexicon | None = None,
) -> DataReport:
    """Summarise ``source`` (see the module docstring); ``progress(done, total)`` is called while decoding.

    ``lexicon``: the cue words descriptions are read with (default: the built-in vocabulary).
    """
    lexicon = lexicon or LEXICON
    counts: Counter[str] = Counter()
    partly = 0
    for _, label, texts in indexed_clips(source):
        counts[label] += 1
        known = [t is not None for t in texts.values()]
        if any(known) and not all(known):
            partly += 1
    read = lexicon_coverage(source, lexicon)
    skips = source.clips.skip_log if isinstance(source.clips, DatasetReader) else SkipLog()
    decoded = _decode_all(source, skips, progress) if decode else None
    # a label outside the source's label set (a manifest that disagrees with its corpus.json) still counts
    label_counts = {lab: counts.get(lab, 0) for lab in source.labels}
    label_counts.update({lab: n for lab, n in counts.items() if lab not in label_counts})
    clip_kinds = {k: n for k, n in skips.counts.items() if k not in DESCRIPTION_PROBLEMS}
    line_kinds = {k: n for k, n in skips.counts.items() if k in DESCRIPTION_PROBLEMS}
    messages = skips.messages
    return DataReport(
        description=source.description,
        clips=len(source.clips),
        labels=tuple(source.labels),
        label_counts=label_counts,
        described=read.described,
        partly_described=partly,
        vocabulary_described=read.readable,
        skipped=clip_kinds,
        skip_messages={k: messages[k] for k in clip_kinds},
        description_lines_skipped=line_kinds,
        description_messages={k: messages[k] for k in line_kinds},
        decoded=decoded,
        fingerprint=source.fingerprint,
        lexicon=repr(lexicon),
        unreadable_example=read.unreadable_example,
        negated_statements=read.negated,
        unread_words=read.most_unread(),
        strength_described=read.strength_known,
    )
