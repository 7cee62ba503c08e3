"""Reading an explanation: which emotion it argues for, and whether its evidence is true and complete.

ICR (the share of correct predictions whose explanation implies a different
emotion) is only meaningful if the judge measures the *explanation*, not the
label copied into it. So the implied emotion comes from cue statements alone:
each phrase of a cue lexicon (:mod:`.lexicon`) supports emotions with known
weights and an intensity word in front of it scales them. A sentence that
just names an emotion ("the answer is clearly angry") states no cue and
implies nothing; the lexicon contract guarantees no phrase contains a label
word, so naming labels can never move the judgement.

Consistency alone can be bought by leaving evidence out or by inventing it, so
three checks sit beside the judge:

* :func:`grounding` - the share of stated cues that are true of the input;
* :func:`coverage` - the share of present modalities the explanation describes;
* :func:`misplaced_cues` - cue statements filed under the other modality's segment;
* :func:`intensity_agreement` - the share of cue statements as strong as the input's cue
  (measured by evaluation; the ``intensity`` reward term asks the same of each cue, off by default).

Every reader takes a ``lexicon`` (:class:`~migr_rt.training.lexicon.CueLexicon`):
the built-in cue vocabulary by default, or the one a model was trained with
(a real dataset described in its own words).

A negated statement ("no lowered brows", "without a trembling voice") states
nothing to any of these readers (:class:`~migr_rt.training.lexicon.CueLexicon`
says what counts as negated).

Known limits (acceptable while descriptions and the model state cues in the
lexicon's phrases): negation is read only from words before a phrase
("lowered brows: absent" states lowered brows), and intensity words are scored
and measured (:func:`intensity_agreement`) but not rewarded.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from migr_rt.training.lexicon import Cue, CueLexicon, Statement, implied_emotion_scores
from migr_rt.training.synth.cues import LEXICON

from migr_rt.labels import DFEW_LABELS
from migr_rt.traces import ParsedTrace

#: Scores closer than this count as tied (sums of float weights are not exact).
TIE_TOLERANCE = 1e-9


@runtime_checkable
class ExplanationJudge(Protocol):
    """Anything that reads an explanation and says which emotion it argues for (pluggable for real data)."""

    def implied_emotion(self, explanation: str) -> str | None:
        """The emotion the explanation argues for; None when it states no evidence."""
        ...

    def emotion_scores(self, explanation: str) -> dict[str, float]:
        """Support per label (every label present, >= 0)."""
        ...


class CueJudge:
    """The default judge: exact wherever explanations state cues in its lexicon's phrases.

    ``emotion_scores`` sums ``support x intensity`` over every cue statement
    (a cue stated twice counts twice: repetition is penalised by the
    coherence reward, not hidden here). ``implied_emotion`` is the arg-max;
    scores within :data:`TIE_TOLERANCE` of the maximum tie, and a tie goes to
    the label that comes first in ``labels`` (the checkpoint's label order), so
    the verdict never depends on dict or set ordering. All-zero scores (no
    cue stated) give None.
    """

    def __init__(self, labels: Sequence[str] = DFEW_LABELS, lexicon: CueLexicon | None = None) -> None:
        self.labels: tuple[str, ...] = tuple(labels)
        if not self.labels:
            raise ValueError("CueJudge needs at least one label")
        self.lexicon: CueLexicon = lexicon or LEXICON

    def emotion_scores(self, explanation: str) -> dict[str, float]:
        return implied_emotion_scores(self.lexicon.find(explanation), self.labels)

    def implied_emotion(self, explanation: str) -> str | None:
        return self.verdict(self.emotion_scores(explanation))

    def parts_scores(self, parts: Iterable[str]) -> dict[str, float]:
        """:meth:`emotion_scores` of texts read one by one: no phrase or negation reaches from one into the next."""
        return implied_emotion_scores([found for text in parts for found in self.lexicon.find(text)], self.labels)

    def verdict(self, scores: Mapping[str, float]) -> str | None:
        """The arg-max of ``scores`` (ties to the first label); None when no cue was stated."""
        best = max(scores.values())
        if best <= 0.0:
            return None
        return next(lab for lab in self.labels if scores[lab] >= best - TIE_TOLERANCE)

    def __repr__(self) -> str:
        return f"CueJudge(labels={self.labels!r}, lexicon={self.lexicon!r})"


def explanation_parts(parsed: ParsedTrace) -> Iterator[tuple[str | None, str]]:
    """``(modality, text)`` of each segment in order, then ``(None, summary)``.

    Parts are scanned one by one rather than through ``parsed.explanation``
    so that a phrase can never be assembled across two segments.
    """
    yield from parsed.segments
    if parsed.summary:
        yield None, parsed.summary


def judged_emotion(judge: ExplanationJudge, parsed: ParsedTrace) -> str | None:
    """The emotion ``parsed``'s explanation argues for, as consistency, ICR and rationale verdicts read it.

    A :class:`CueJudge` reads each part on its own (:func:`explanation_parts`),
    so "no lowered brows" closing one segment cannot negate the cue opening
    the next, and no phrase is assembled across two segments. Any other judge
    gets the whole explanation, one part per line.
    """
    if isinstance(judge, CueJudge):
        return judge.verdict(judge.parts_scores(text for _, text in explanation_parts(parsed)))
    return judge.implied_emotion(parsed.explanation)


def stated_cues(parsed: ParsedTrace, lexicon: CueLexicon | None = None) -> list[tuple[str | None, Cue]]:
    """Every cue statement in the explanation as ``(part modality or None for the summary, cue)``, in order."""
    lexicon = lexicon or LEXICON
    return [(modality, cue) for modality, text in explanation_parts(parsed) for cue, _ in lexicon.find(text)]


@dataclass(frozen=True)
class GroundingReport:
    """Which distinct cues an explanation states and which of them the input does not show.

    A cue stated several times is one claim, so repeating a true cue cannot
    dilute an invented one.
    """

    stated: tuple[Cue, ...]
    ungrounded: tuple[Cue, ...]

    @property
    def rate(self) -> float | None:
        """Share of stated cues that are grounded; None when nothing is stated."""
        if not self.stated:
            return None
        return 1.0 - len(self.ungrounded) / len(self.stated)


def grounding_report(
    parsed: ParsedTrace, actual_cues: Mapping[str, Collection[str]], lexicon: CueLexicon | None = None
) -> GroundingReport:
    """Check every stated cue (segments and summary) against the cues present in the input.

    ``actual_cues`` maps modality -> names of the cues the clip shows. A
    stated cue is grounded when its name is listed under *its own* modality
    (``cue.modality``), wherever it was written: a voice cue filed under
    ``<visual>`` is still true, and :func:`misplaced_cues` reports the
    misfiling separately.
    """
    stated: dict[str, Cue] = {}
    for _, cue in stated_cues(parsed, lexicon):
        stated.setdefault(cue.name, cue)
    ungrounded = tuple(c for c in stated.values() if c.name not in actual_cues.get(c.modality, ()))
    return GroundingReport(stated=tuple(stated.values()), ungrounded=ungrounded)


def grounding(
    parsed: ParsedTrace, actual_cues: Mapping[str, Collection[str]], lexicon: CueLexicon | None = None
) -> float | None:
    """Share of distinct stated cues present in the input (see :func:`grounding_report`); None if none stated."""
    return grounding_report(parsed, actual_cues, lexicon).rate


def coverage(parsed: ParsedTrace, present: Collection[str], lexicon: CueLexicon | None = None) -> float:
    """Share of ``present`` modalities described by a segment of their own that states one of their cues.

    A segment counts for modality m only if it is tagged m and states at
    least one cue of m, so an empty ``<audio></audio>`` or an audio segment
    that only talks about the face does not cover audio. Vacuously 1.0 when
    nothing is present.
    """
    wanted = list(dict.fromkeys(present))
    if not wanted:
        return 1.0
    lexicon = lexicon or LEXICON
    covered = {
        modality
        for modality, text in parsed.segments
        if text and any(cue.modality == modality for cue, _ in lexicon.find(text))
    }
    return sum(m in covered for m in wanted) / len(wanted)


def described_cues(
    descriptions: Mapping[str, str | None], lexicon: CueLexicon | None = None
) -> dict[str, list[str]] | None:
    """The cues a clip shows, read from its per-modality descriptions; None when they cannot be read.

    This is how a real dataset's descriptions file (which has no cue records)
    gets grounding and coverage: when every non-empty description states at
    least one cue of its own modality, the cues they state are the cues the
    clip shows (``""`` shows none). A description with no such cue, or an
    unknown one (None), makes the whole clip unknown rather than half-known: a
    stated cue of an unread modality would otherwise count as invented. A
    negated cue ("no lowered brows") is not shown, and a description that only
    negates cues is unknown, not empty: it says what is absent, not what
    shows. Words beside the recognised cues (``"lowered brows and a furious
    glare"``) are not read, so mixed descriptions are measured on their
    lexicon part only.
    """
    if not descriptions:
        return None
    lexicon = lexicon or LEXICON
    out: dict[str, list[str]] = {}
    for modality, text in descriptions.items():
        if text is None:
            return None
        names = [cue.name for cue, _ in lexicon.find(text) if cue.modality == modality]
        if text.strip() and not names:
            return None
        out[modality] = names
    return out


def described_intensities(
    descriptions: Mapping[str, str | None], lexicon: CueLexicon | None = None
) -> dict[str, float] | None:
    """Cue name -> the weight of the intensity word its description states it with; None when cues are unknown.

    Only cues stated with an intensity word are listed (a bare phrase says
    nothing about how strong the cue is), and a cue described twice with
    different words is left out (its strength is not known). Unknown exactly
    when :func:`described_cues` is.
    """
    lexicon = lexicon or LEXICON
    if described_cues(descriptions, lexicon) is None:
        return None
    weights: dict[str, set[float]] = {}
    for modality, text in descriptions.items():
        for st in lexicon.statements(text or ""):
            if not st.negated and st.intensity is not None and st.cue.modality == modality:
                weights.setdefault(st.cue.name, set()).add(st.weight)
    return {name: next(iter(ws)) for name, ws in weights.items() if len(ws) == 1}


def intensity_agreement(
    parsed: ParsedTrace, shown: Mapping[str, float], lexicon: CueLexicon | None = None
) -> float | None:
    """Share of the explanation's statements of shown cues whose weight is the input's.

    Grounding asks whether a stated cue is there; this asks whether it is as
    strong as said, as the judge weighs it: the intensity word's weight, or
    1.0 for a bare phrase (which the judge counts like the strongest word).
    An explanation that calls a slight cue "strongly ..." (or names it bare)
    to tip the judge towards its answer is grounded but not faithful. Every
    statement of a cue ``shown`` lists (cue name -> the input's weight,
    :func:`described_intensities`) counts, a cue stated twice twice, as the
    judge counts it; None when there is none.
    """
    stated = strength_statements(parsed, shown, lexicon)
    if not stated:
        return None
    return sum(as_strong_as_shown(st, shown) for st in stated) / len(stated)


def as_strong_as_shown(statement: Statement, shown: Mapping[str, float]) -> bool:
    """Whether a statement weighs its cue as the input does (``shown``: cue name -> the input's weight)."""
    return abs(statement.weight - shown[statement.cue.name]) <= TIE_TOLERANCE


def strength_statements(
    parsed: ParsedTrace, shown: Collection[str], lexicon: CueLexicon | None = None
) -> list[Statement]:
    """The explanation's statements (part by part, negated ones left out) of the cues whose strength is known.

    What :func:`intensity_agreement` scores; ``benchmarks/intensity_agreement.py`` reads the same statements.
    """
    lexicon = lexicon or LEXICON
    return [st for _, text in explanation_parts(parsed) for st in lexicon.statements(text)
            if not st.negated and st.cue.name in shown]


def misplaced_cues(parsed: ParsedTrace, lexicon: CueLexicon | None = None) -> int:
    """Cue statements inside a segment of another modality (e.g. "trembling voice" inside ``<visual>``).

    Counted per occurrence; the summary is exempt because it may weigh both
    modalities.
    """
    return sum(1 for modality, cue in stated_cues(parsed, lexicon) if modality is not None and cue.modality != modality)
