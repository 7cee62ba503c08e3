"""Reasoning traces: how they are written for SFT and how any generated text is read back.

A trace tags its modality segments so their order is checkable::

    <think><audio>clearly loud voice, ...</audio><visual>slightly knitted brows</visual>
    <summary>...</summary></think><answer>angry</answer>

Writing (:func:`build_trace`) takes the per-modality cue descriptions of a
clip and an order: visual-first for the R1-Omni-style baseline, the
dominant modality first for MIGR. Reading (:func:`parse_trace`) never
raises: rewards, the judge and evaluation all see generated text, which can
be anything, so the parser reports what it found and what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: Segment tag of each modality.
SEGMENT_TAGS: dict[str, str] = {"visual": "visual", "audio": "audio"}
SUMMARY_TAG = "summary"

_TOKEN = re.compile(r"<(/?)(think|answer|visual|audio|summary)>")


@dataclass
class ParsedTrace:
    """What a (possibly malformed) trace contains.

    ``segments`` are the modality segments in the order they appear
    (``(modality, text)``); ``answer`` is the stripped answer text or None;
    ``problems`` lists every format violation found (empty when well formed).
    """

    segments: list[tuple[str, str]] = field(default_factory=list)
    summary: str | None = None
    answer: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def well_formed(self) -> bool:
        return not self.problems

    @property
    def first_modality(self) -> str | None:
        return self.segments[0][0] if self.segments else None

    @property
    def explanation(self) -> str:
        """The explanation as one text: every segment and the summary, in order, one per line.

        The cue judge reads the parts one by one instead
        (``migr_rt.training.judge.judged_emotion``); a pluggable judge gets
        this text, where a line break ends each part.
        """
        parts = [text for _, text in self.segments]
        if self.summary:
            parts.append(self.summary)
        return "\n".join(p for p in parts if p)

    def segment(self, modality: str) -> str | None:
        texts = [text for m, text in self.segments if m == modality]
        return texts[0] if texts else None


def summary_text(dominant: str | None, descriptions: Mapping[str, str]) -> str:
    """A short conclusion that names which modality carries the evidence and restates its first cue.

    It never names the label: consistency is judged from cue statements,
    and a summary that just said the answer would teach label copying.
    ``dominant=None`` is the R1-Omni-style conclusion of a model that has no
    notion of a dominant modality: it weighs what was described and restates
    no cue.
    """
    if dominant is None:
        return f"the {' and '.join(m for m, text in descriptions.items() if text)} evidence together decide"
    lead = (descriptions.get(dominant) or "").split(",")[0].strip()
    if not lead:
        return f"the {dominant} evidence decides"
    return f"the {dominant} evidence decides: {lead}"


_SUMMARY_ONE = re.compile(r"the (\S+) evidence decides(?:: \S.*)?", flags=re.S)
_SUMMARY_ALL = re.compile(r"the (\S+(?: and \S+)*) evidence together decide", flags=re.S)


def summary_problem(
    parsed: ParsedTrace, modalities: Sequence[str] = tuple(SEGMENT_TAGS), *, required: bool = True,
) -> str | None:
    """What is wrong with the summary's sentence, or None.

    A missing or empty summary is a problem when ``required`` (a rationale; otherwise a model could
    escape the check by leaving the summary out) and not for a base model's cue description.

    :func:`summary_text` writes one of two sentences, and the summary is
    where a rationale says which modality decided. The cue judge reads cue
    phrases only, so it cannot see a sentence that is broken: a modality
    word a small decoder assembled from the word pieces of "audio" and
    "visual" ("the aual evidence decides", "visudio"), or a stuttered verb
    ("together decidecide"). Checked here, for the format reward and for
    evaluation. Naming a modality other than the opening one is not a fault:
    a rationale may describe the face first and conclude that the voice decides.
    """
    summary = (parsed.summary or "").strip()
    if not summary:
        return ("no summary" if parsed.summary is None else "empty summary") if required else None
    match = _SUMMARY_ONE.fullmatch(summary) or _SUMMARY_ALL.fullmatch(summary)
    if match is None:
        return "summary is neither 'the M evidence decides[: cue]' nor 'the M and M evidence together decide'"
    named = match.group(1).split(" and ")
    unknown = [m for m in named if m not in modalities]
    if unknown:
        return f"summary names {unknown[0]!r}, not a modality"
    if len(set(named)) != len(named):
        return "summary names a modality twice"
    return None


def build_trace(
    descriptions: Mapping[str, str],
    order: Sequence[str],
    dominant: str | None,
    label: str,
) -> str:
    """The full target text after the prompt: ``<think>`` segments in ``order``, summary, answer."""
    parts = ["<think>"]
    for modality in order:
        tag = SEGMENT_TAGS[modality]
        parts.append(f"<{tag}>{descriptions.get(modality) or ''}</{tag}>")
    parts.append(f"<{SUMMARY_TAG}>{summary_text(dominant, descriptions)}</{SUMMARY_TAG}>")
    parts.append(f"</think><answer>{label}</answer>")
    return "".join(parts)


def modality_order(first: str, modalities: Sequence[str] = ("visual", "audio")) -> list[str]:
    """``first`` followed by the other modalities in their usual order."""
    if first not in modalities:
        raise ValueError(f"unknown modality {first!r}; expected one of {list(modalities)}")
    return [first] + [m for m in modalities if m != first]


def parse_trace(text: str, labels: Sequence[str] | None = None) -> ParsedTrace:
    """Read a generated trace; never raises. ``labels`` (if given) checks the answer is a known label."""
    out = ParsedTrace()
    tokens = list(_TOKEN.finditer(text))
    think_open = [t for t in tokens if t.group(0) == "<think>"]
    think_close = [t for t in tokens if t.group(0) == "</think>"]
    if len(think_open) != 1 or len(think_close) != 1:
        out.problems.append(f"expected one <think>...</think>, found {len(think_open)} open / {len(think_close)} close")
    if think_open and think_close and think_open[0].start() > think_close[0].start():
        out.problems.append("</think> before <think>")
    if think_open and think_open[0].start() != 0 and text[: think_open[0].start()].strip():
        out.problems.append("text before <think>")

    seen: dict[str, int] = {}
    found: list[tuple[int, str, str]] = []  # (position, modality, text)
    for tag in (*SEGMENT_TAGS.values(), SUMMARY_TAG):
        for match in re.finditer(rf"<{tag}>(.*?)</{tag}>", text, flags=re.S):
            seen[tag] = seen.get(tag, 0) + 1
            body = match.group(1).strip()
            if _TOKEN.search(body):
                out.problems.append(f"<{tag}> segment contains other tags")
            if tag != SUMMARY_TAG:
                found.append((match.start(), tag, body))
            elif out.summary is None:
                out.summary = body
    out.segments = [(modality, body) for _, modality, body in sorted(found)]
    for tag in (*SEGMENT_TAGS.values(), SUMMARY_TAG):
        opened = text.count(f"<{tag}>")
        closed = text.count(f"</{tag}>")
        if opened != closed or opened != seen.get(tag, 0):
            out.problems.append(f"unbalanced <{tag}> tags ({opened} open, {closed} close)")
        elif seen.get(tag, 0) > 1:
            out.problems.append(f"<{tag}> appears {seen[tag]} times")
    if not out.segments:
        out.problems.append("no modality segment")
    for modality, body in out.segments:
        if not body:
            out.problems.append(f"empty <{modality}> segment")
    if think_close:
        inside = [m for m in re.finditer(r"<(visual|audio|summary)>", text) if m.start() > think_close[0].start()]
        if inside:
            out.problems.append("segment after </think>")

    answers = re.findall(r"<answer>(.*?)</answer>", text, flags=re.S)
    if len(answers) != 1:
        out.problems.append(f"expected one <answer>...</answer>, found {len(answers)}")
    if answers:
        out.answer = answers[0].strip()
        if labels is not None and out.answer not in labels:
            out.problems.append(f"answer {out.answer!r} is not a label")
    tail = text[text.rfind("</answer>") + len("</answer>") :] if "</answer>" in text else ""
    if tail.strip():
        out.problems.append("text after </answer>")
    return out
