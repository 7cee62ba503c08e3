"""GRPO rewards: one named, pure term per property of a generated trace, and a weighted combiner.

Each term is ``(parsed: ParsedTrace, ctx: RewardContext) -> float`` in [0, 1],
a pure function of the parsed generation and what is known about its input,
so every term is unit-testable on hand-written text. Generations are raw
decoded text and can be anything; :func:`~migr_rt.traces.parse_trace`
never raises and every term is defined on whatever it returns.

Terms (exact scoring in each function's docstring):

==============  =============================================================  ===============
term            1.0 when                                                       applicable when
==============  =============================================================  ===============
accuracy        the answer is the label                                        always
format          the trace is well formed (0.5 if merely usable)                always
first_segment   the first segment is the dominant modality and states its cue  ``ctx.dominant``
consistency     the answer is right and the explanation implies it             always
grounding       every stated cue is present in the input                       ``ctx.actual_cues``
intensity       every cue of known strength is stated, as strong as it shows   ``ctx.intensities``
coverage        every present modality is described by its own cues            ``ctx.present``
coherence       no misfiled or repeated cue, no echoed part, no runaway length always
==============  =============================================================  ===============

Combination (:func:`score`): the total is **normalised**, a weighted mean
over the terms that are both weighted (> 0) and applicable::

    total = sum(w_t * r_t) / sum(w_t)        (0 when no term qualifies)

so it lies in [0, 1] whatever is known about the input. A term with weight 0
is not computed at all; a term that is not applicable to a sample reports 0
and its weight leaves that sample's denominator. GRPO compares generations of
the same prompt (same context, hence the same denominator), so the
normalisation never reorders a group.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

import torch
from migr_rt.training.judge import (
    CueJudge,
    ExplanationJudge,
    as_strong_as_shown,
    coverage,
    explanation_parts,
    grounding,
    judged_emotion,
    strength_statements,
)
from migr_rt.training.lexicon import CueLexicon
from migr_rt.training.synth.cues import LEXICON

from migr_rt.labels import DFEW_LABELS, MODALITIES
from migr_rt.traces import ParsedTrace, parse_trace, summary_problem

#: Explanation length (characters, segments + summary) above which coherence decays as budget / length.
#: Ground-truth corpus explanations stay under ~450 characters (2000 clips of seed 0: max 444).
LENGTH_BUDGET = 600


@dataclass(frozen=True)
class RewardContext:
    """What the reward may know about the input of one generation.

    ``dominant``: the modality the explanation should open with (MI-derived
    in MIGR; None = unknown). ``present``: modalities with evidence in the
    input. ``actual_cues``: modality -> names of the cues the input shows
    (empty mapping when unknown, e.g. real datasets). Every default means
    "unknown", so the terms that need it are not applicable rather than
    judged against a guess. ``vocabulary``: whether the input's cues are
    known in ``lexicon``'s words; False for a real clip described in other
    words (or not at all), where a cue of the dominant modality cannot be
    asked of the opening segment (see :func:`first_segment_reward`).
    ``lexicon``: the cue words every term reads the generation with (the
    built-in vocabulary, or the lexicon the model is trained with).
    ``intensities``: cue name -> the weight of the intensity word the input
    states it with (:func:`~.judge.described_intensities`), for shown cues
    whose strength is known; empty when none is.
    """

    label: str
    labels: tuple[str, ...] = DFEW_LABELS
    dominant: str | None = None
    present: tuple[str, ...] = ()
    actual_cues: Mapping[str, frozenset[str]] = field(default_factory=dict)
    vocabulary: bool = True
    lexicon: CueLexicon = LEXICON
    intensities: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        strengths = {str(name): float(w) for name, w in self.intensities.items()}
        bad = {name: w for name, w in strengths.items() if not math.isfinite(w) or w <= 0}
        if bad:
            raise ValueError(f"intensities must be finite weights > 0, got {bad}")
        object.__setattr__(self, "intensities", MappingProxyType(strengths))
        object.__setattr__(self, "present", tuple(self.present))
        cues = {m: frozenset(names) for m, names in self.actual_cues.items()}
        object.__setattr__(self, "actual_cues", MappingProxyType(cues))
        if self.label not in self.labels:
            raise ValueError(f"label {self.label!r} is not in the label set {self.labels}")
        if self.dominant is not None and self.dominant not in MODALITIES:
            raise ValueError(f"dominant must be one of {MODALITIES} or None, got {self.dominant!r}")


def context_from_record(
    record: Mapping[str, Any], labels: Sequence[str] = DFEW_LABELS, *, dominant: str | None
) -> RewardContext:
    """The reward context of a synthetic-corpus manifest record.

    ``dominant`` is explicit because MIGR uses the base model's MI, not the
    generator's ground truth (pass ``record["dominant"]`` for the latter).
    A modality is present when the record lists cues for it.
    """
    actual = {m: frozenset(c["name"] for c in record[m]["cues"]) for m in MODALITIES if m in record}
    present = tuple(m for m in MODALITIES if actual.get(m))
    words = LEXICON.intensity_words
    strengths = {c["name"]: words[c["intensity_word"]] for m in MODALITIES if m in record
                 for c in record[m]["cues"] if c.get("intensity_word") in words}
    return RewardContext(
        label=record["label"], labels=tuple(labels), dominant=dominant, present=present, actual_cues=actual,
        intensities=strengths,
    )


# ---------------------------------------------------------------------------------------------- terms


def accuracy_reward(parsed: ParsedTrace, ctx: RewardContext) -> float:
    """1.0 when the stripped answer equals ``ctx.label`` exactly, else 0.0 (missing answer included)."""
    return float(parsed.answer == ctx.label)


def format_reward(parsed: ParsedTrace, ctx: RewardContext) -> float:
    """1.0 when ``parse_trace`` finds no problem and the summary's sentence is sound; 0.5 when the trace is
    merely usable; else 0.0.

    Usable = the answer is a label of ``ctx.labels`` and at least one modality
    segment is non-empty, i.e. every other term can read something. Three
    levels keep a gradient for nearly-right outputs without weighing the
    parser's individual problem messages against each other. The summary
    check (:func:`~migr_rt.traces.summary_problem`: the summary is there and
    its sentence is sound) is here because no other term reads the summary's
    words: without it, GRPO on seed 0 drifted to "the aual evidence decides"
    in a third of the held-out rationales.
    """
    if not parsed.problems and summary_problem(parsed) is None:
        return 1.0
    usable = parsed.answer in ctx.labels and any(text for _, text in parsed.segments)
    return 0.5 if usable else 0.0


def first_segment_reward(parsed: ParsedTrace, ctx: RewardContext) -> float:
    """1.0 when the first segment is tagged ``ctx.dominant`` and states at least one cue of that modality.

    0.0 with no segments. Requiring a cue of the dominant modality closes the
    loophole of opening with an empty (or off-topic) dominant segment and then
    leading with the other modality's evidence anyway. Not applicable (0.0)
    when ``ctx.dominant`` is None. When the input is described in words
    outside the lexicon (``ctx.vocabulary`` False) no cue can be
    recognised, so the segment must be non-empty and state no cue of another
    modality instead; otherwise the term would be 0 for every generation and
    MIGR's ordering reward would vanish on real data.
    """
    if ctx.dominant is None or not parsed.segments:
        return 0.0
    modality, text = parsed.segments[0]
    if modality != ctx.dominant:
        return 0.0
    cues = [cue for cue, _ in ctx.lexicon.find(text)]
    if any(cue.modality == modality for cue in cues):
        return 1.0
    return float(not ctx.vocabulary and not cues and bool(text.strip()))


def consistency_reward(parsed: ParsedTrace, ctx: RewardContext, judge: ExplanationJudge | None = None) -> float:
    """1.0 when the answer is the label *and* the judge's implied emotion of the explanation equals it.

    ICR, the metric this term serves, counts inconsistent explanations among
    correct answers, so agreement is credited only there. A first version
    credited agreement with any answer, right or wrong; GRPO then paid
    "wrong answer, explanation bent to match" as much as "right answer,
    inconsistent explanation", and measured on the held-out split the policy
    took that trade (generated-answer accuracy fell 2 points, ICR did not
    drop). 0.0 when the answer is missing or wrong, or the explanation states
    no cue (implied None), so naming the label without evidence earns
    nothing. ``judge`` defaults to :class:`CueJudge` over ``ctx.labels`` and ``ctx.lexicon``.
    """
    if parsed.answer is None or parsed.answer != ctx.label:
        return 0.0
    implied = judged_emotion(judge or _cue_judge(ctx.labels, ctx.lexicon), parsed)
    return float(implied is not None and implied == parsed.answer)


def grounding_reward(parsed: ParsedTrace, ctx: RewardContext) -> float:
    """Share of distinct stated cues (segments + summary) present in the input, judged by each cue's own modality.

    0.0 when no cue is stated: an explanation cannot score by saying nothing.
    Not applicable (0.0) when ``ctx.actual_cues`` is empty.
    """
    if not ctx.actual_cues:
        return 0.0
    rate = grounding(parsed, ctx.actual_cues, ctx.lexicon)
    return 0.0 if rate is None else rate


def intensity_reward(parsed: ParsedTrace, ctx: RewardContext) -> float:
    """Share of the input's cues of known strength that the explanation states, every time as strong as shown.

    Grounding asks whether a stated cue is there; this asks whether the
    input's cues are said as strong as they are: a cue of ``ctx.intensities``
    counts when the explanation states it (segments or summary, negated
    statements left out) and every statement of it carries the input's
    weight (:func:`~.judge.strength_statements`; a bare phrase weighs 1.0, as
    the judge weighs it). Per cue, not per statement, so leaving a cue out
    costs as much as misstating it: a share of statements would make saying
    less the safe choice. The judge sums cue weights, so an explanation can
    tip its implied emotion towards the answer by calling a slight cue
    "strongly ..."; MIGR's stored rationales overstated cues more often than
    the baseline's (``benchmarks/results/intensity_agreement.md``). This term
    makes that cost something; it does not outweigh a verdict the
    consistency term pays for. ``migr-rt eval``'s ``intensity_agreement`` is
    the per-statement view. Not applicable (0.0) when ``ctx.intensities`` is
    empty.
    """
    if not ctx.intensities:
        return 0.0
    said: dict[str, bool] = {}
    for st in strength_statements(parsed, ctx.intensities, ctx.lexicon):
        said[st.cue.name] = said.get(st.cue.name, True) and as_strong_as_shown(st, ctx.intensities)
    return sum(said.values()) / len(ctx.intensities)


def coverage_reward(parsed: ParsedTrace, ctx: RewardContext) -> float:
    """Share of ``ctx.present`` modalities with a segment of their own that states one of their cues.

    Not applicable (0.0) when ``ctx.present`` is empty.
    """
    if not ctx.present:
        return 0.0
    return coverage(parsed, ctx.present, ctx.lexicon)


def coherence_reward(parsed: ParsedTrace, ctx: RewardContext) -> float:
    """How cleanly the explanation is organised::

        coherence = (1 - flawed / stated) * min(1, LENGTH_BUDGET / len(parsed.explanation))

    ``stated`` counts every cue statement in the segments and the summary
    (0 statements -> 0.0: an explanation with no evidence is not coherent
    reasoning). A statement is *flawed* (each counted once) when

    * it sits in a segment of the other modality (:func:`~.judge.misplaced_cues`);
    * its cue was already stated earlier; the summary's *first* restatement
      is exempt, because a conclusion that names its decisive cue is what
      :func:`~migr_rt.traces.summary_text` writes;
    * its part (segment or summary) echoes an earlier part: the same text
      after lower-casing and dropping punctuation.

    The length factor penalises runaway generations (e.g. a cue list repeated
    for thousands of characters) even when every statement were distinct.
    """
    flawed = stated = 0
    seen_cues: set[str] = set()
    seen_texts: set[str] = set()
    summary_restated = False
    for modality, text in explanation_parts(parsed):
        norm = _normalise(text)
        echo = bool(norm) and norm in seen_texts
        seen_texts.add(norm)
        for cue, _ in ctx.lexicon.find(text):
            stated += 1
            misplaced = modality is not None and cue.modality != modality
            repeat = cue.name in seen_cues
            if repeat and modality is None and not summary_restated:
                summary_restated, repeat = True, False
            seen_cues.add(cue.name)
            flawed += echo or misplaced or repeat
    if stated == 0:
        return 0.0
    length = len(parsed.explanation)
    return (1.0 - flawed / stated) * min(1.0, LENGTH_BUDGET / max(length, 1))


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


@functools.lru_cache(maxsize=16)
def _cue_judge(labels: tuple[str, ...], lexicon: CueLexicon) -> CueJudge:
    return CueJudge(labels, lexicon)


TermFn = Callable[[ParsedTrace, RewardContext], float]

#: Every reward term by name, in reporting order.
TERMS: Mapping[str, TermFn] = {
    "accuracy": accuracy_reward,
    "format": format_reward,
    "first_segment": first_segment_reward,
    "consistency": consistency_reward,
    "grounding": grounding_reward,
    "intensity": intensity_reward,
    "coverage": coverage_reward,
    "coherence": coherence_reward,
}


def applicable(term: str, ctx: RewardContext) -> bool:
    """Whether ``term`` can be judged for this input (otherwise its weight leaves the normalisation)."""
    if term == "first_segment":
        return ctx.dominant is not None
    if term == "grounding":
        return bool(ctx.actual_cues)
    if term == "intensity":
        return bool(ctx.intensities)
    if term == "coverage":
        return bool(ctx.present)
    if term not in TERMS:
        raise KeyError(f"unknown reward term {term!r}; expected one of {list(TERMS)}")
    return True


# ---------------------------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class RewardWeights:
    """Weight of each term (>= 0; 0 skips the term). The defaults are MIGR's stage-2 rewards.

    Why these defaults: accuracy and consistency carry the two headline
    metrics (WAR and ICR) and weigh 1.0 each; the first-segment term (MIGR's
    modality ordering) and grounding (which keeps consistency from being
    bought with invented cues) weigh 0.5; coverage 0.5 (leaving a whole
    modality out costs 0.25 of the mean); format and coherence 0.25, because
    SFT already teaches the trace shape and they only need to hold it.
    Total weight 4.0. Intensity is off (0) by default: at 0.5, over three
    seeds, it cut overstated cues but took back only a quarter of the
    intensity agreement GRPO loses, at lower grounding and no change in ICR
    (``benchmarks/results/intensity_reward.md``); ``migr-rt eval`` measures
    it either way, and ``--reward-weight intensity=W`` turns it on.
    :meth:`baseline` is the R1-Omni-style comparison.
    """

    accuracy: float = 1.0
    format: float = 0.25
    first_segment: float = 0.5
    consistency: float = 1.0
    grounding: float = 0.5
    intensity: float = 0.0
    coverage: float = 0.5
    coherence: float = 0.25

    def __post_init__(self) -> None:
        for name, w in self.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ValueError(f"reward weight {name!r} must be a finite number >= 0, got {w!r}")
        if not any(w > 0 for _, w in self.items()):
            raise ValueError("at least one reward weight must be > 0")

    @classmethod
    def baseline(cls) -> RewardWeights:
        """R1-Omni-style GRPO: accuracy + format, equally weighted, nothing else."""
        off = dict.fromkeys(("first_segment", "consistency", "grounding", "intensity", "coverage", "coherence"), 0.0)
        return cls(accuracy=1.0, format=1.0, **off)

    def items(self) -> list[tuple[str, float]]:
        """``(term, weight)`` in :data:`TERMS` order."""
        return [(f.name, getattr(self, f.name)) for f in fields(self)]

    def active(self) -> list[str]:
        """Terms with weight > 0 (the ones :func:`score` computes)."""
        return [name for name, w in self.items() if w > 0]


# ---------------------------------------------------------------------------------------------- combiner


def score(
    texts: Sequence[str],
    contexts: Sequence[RewardContext],
    weights: RewardWeights,
    judge: ExplanationJudge | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Reward each generated text against its context.

    Returns the normalised total, shape (N,), and each computed term, shape
    (N,), keyed by name in :data:`TERMS` order (only terms with weight > 0;
    a row where a term is not applicable holds 0 for it, see
    :func:`applicable`). ``judge`` defaults to :class:`CueJudge` over each
    context's labels and lexicon. float32 on the CPU.
    """
    if len(texts) != len(contexts):
        raise ValueError(f"{len(texts)} texts but {len(contexts)} contexts")
    names = weights.active()
    terms = {name: torch.zeros(len(texts), dtype=torch.float32) for name in names}
    total = torch.zeros(len(texts), dtype=torch.float32)
    for i, (text, ctx) in enumerate(zip(texts, contexts)):
        parsed = parse_trace(text, ctx.labels)
        acc = norm = 0.0
        for name in names:
            if not applicable(name, ctx):
                continue
            if name == "consistency":
                value = consistency_reward(parsed, ctx, judge)
            else:
                value = TERMS[name](parsed, ctx)
            w = getattr(weights, name)
            terms[name][i] = value
            acc += w * value
            norm += w
        total[i] = acc / norm if norm > 0 else 0.0
    return total, terms
