"""Evaluating a reasoning checkpoint: accuracy, explanation consistency, modality order, grounding, drift.

:func:`evaluate_reasoning` greedy-decodes a rationale for every window (with
the window's own modality visibility), reads it back with
:func:`~.traces.parse_trace` and reports (DESIGN.md, "Evaluation"):

* **WAR** (accuracy) and **UAR** (mean recall over the classes that have
  support), per-class recall. The prediction is the parsed answer; a missing
  answer or one that is not a label is wrong and counted in
  ``invalid_answers``.
* **ICR**: among correct predictions, the share whose explanation's implied
  emotion (the judge's verdict on the cue statements, never on a named label)
  differs from the answer. An explanation that states no cue implies nothing
  and counts as inconsistent (``icr_no_cue`` counts those separately), so an
  explanation cannot look consistent by saying nothing.
* **label-closed ICR and agreement**: the same two readings with the
  rationale closed by the window's answer-slot label, as the runtime closes
  it (:class:`~migr_rt.backends.decode.AnswerAnchor`; the explanation is the
  same, only its closing answer changes): ``label_closed_icr`` among windows
  whose slot label is right, and ``*_explanation_agreement``, the share of
  all windows whose explanation argues for the answer it closes with.
* **first-segment agreement**: the share of windows whose first segment is
  the ground-truth dominant modality (``meta["dominant"]``), over windows
  that know it and where that modality is visible; also on one-sided clips.
* **grounding rate**: the mean share of stated cues that the input shows
  (:func:`~.judge.grounding`), over outputs that state at least one cue, on
  windows whose shown cues are known (:meth:`~.windows.WindowSet.shown_cues`). Cues of a hidden modality are not
  in the input the model saw, so they do not count as shown.
* **intensity agreement** (:func:`~.judge.intensity_agreement`): the mean
  share of statements of shown cues whose weight (their intensity word's,
  1.0 for a bare phrase, as the judge weighs them) matches the word the
  window's descriptions use, over outputs that state at least one.
* **coverage** (:func:`~.judge.coverage`) of the visible modalities that
  carry evidence, the **format-valid** share, and the share of **summary
  faults** (:func:`~migr_rt.traces.summary_problem`: a rationale without a
  summary, or whose summary sentence is broken, e.g. names no modality).
* the same metrics per subset: ``consistent`` clips, ``ambiguous_conflicting``
  (ambiguous + conflicting) and per ``kind`` (synthetic corpus only).
* the **drift curve**: for generated step t, the attention mass that the
  query producing token t (the ``<think>`` position for t = 0, the previous
  generated token after that) puts on the visual and audio placeholder
  positions, averaged over layers and heads, then over the windows that
  reach step t.

The metric arithmetic (:func:`window_record`, :func:`reasoning_metrics`,
:func:`subset_metrics`) works on plain texts and meta, so it is testable
without a model. Attention weights need eager attention: the drift pass
switches the decoder to ``eager`` for one teacher-forced forward and restores
the previous implementation afterwards (:func:`eager_attention`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from migr_rt.training.judge import (
    CueJudge,
    ExplanationJudge,
    coverage,
    grounding,
    intensity_agreement,
    judged_emotion,
)
from migr_rt.training.lexicon import CueLexicon
from migr_rt.training.synth.cues import LEXICON
from migr_rt.training.sources import DataSource
from migr_rt.training.windows import WindowSet

from migr_rt.atomic import atomic_output, write_text_atomic
from migr_rt.generate import Generated, GenerationConfig, continuation_inputs, generate
from migr_rt.mi import score_modality_importance
from migr_rt.model.layout import prefix_ids
from migr_rt.model.modeling import MigrForEmotionReasoning
from migr_rt.traces import parse_trace, summary_problem

logger = logging.getLogger(__name__)

#: Kinds pooled into the ``ambiguous_conflicting`` subset.
HARD_KINDS = ("ambiguous", "conflicting")


@dataclass
class EvalConfig:
    max_new_tokens: int = 128  #: longest rationale decoded per window (corpus traces: at most ~90 tokens)
    batch_size: int = 32
    drift: bool = True  #: also measure the attention share on modality tokens per generated step
    drift_steps: int = 64  #: steps of the drift curve (at most ``max_new_tokens``)
    #: "reason": generate ``<think>...</think><answer>``. "describe": a base (perception) checkpoint, which
    #: writes ``<visual>..</visual><audio>..</audio>`` after the prefix and answers at the answer slot; its
    #: description is scored as the explanation of that answer (the baseline's starting point).
    mode: str = "reason"
    #: "free": the model chooses which segment opens its rationale. "mi": the runtime's MI (for the predicted
    #: label, as at run time; no ground truth) picks the opening and decoding starts after that tag.
    opening: str = "free"

    def __post_init__(self) -> None:
        if self.opening not in ("free", "mi"):
            raise ValueError(f"EvalConfig.opening must be 'free' or 'mi', got {self.opening!r}")
        if self.mode not in ("reason", "describe"):
            raise ValueError(f"EvalConfig.mode must be 'reason' or 'describe', got {self.mode!r}")
        if self.max_new_tokens < 1 or self.batch_size < 1 or self.drift_steps < 1:
            raise ValueError(
                f"EvalConfig: max_new_tokens, batch_size and drift_steps must be >= 1, got "
                f"{self.max_new_tokens}, {self.batch_size}, {self.drift_steps}"
            )


# --------------------------------------------------------------------------------------------- records


def _judge_and_lexicon(
    judge: ExplanationJudge | None, lexicon: CueLexicon | None, labels: Sequence[str]
) -> tuple[CueLexicon, ExplanationJudge]:
    """The lexicon grounding and coverage read and the judge, agreeing: a cue judge over another lexicon is refused."""
    own = getattr(judge, "lexicon", None)
    if lexicon is not None and own is not None and own != lexicon:
        raise ValueError(f"the judge reads {own!r} but lexicon={lexicon!r}: verdicts and grounding would read "
                         "different words; pass one of them")
    lexicon = lexicon or own or LEXICON
    return lexicon, judge or CueJudge(labels, lexicon)


@dataclass
class WindowRecord:
    """One window's output as evaluation reads it (a line of ``predictions.jsonl``)."""

    id: str
    label: str
    prediction: str | None  #: the parsed answer when it is a label, else None (an invalid answer)
    answer: str | None  #: the parsed answer as written (None when there is none)
    implied: str | None  #: the judge's implied emotion of the explanation (None: no cue stated)
    first_modality: str | None
    well_formed: bool
    summary_problem: str | None  #: what is wrong with the summary (None: sound, or none owed)
    grounding: float | None  #: share of stated cues shown by the input; None: unknown cues or none stated
    coverage: float
    visible: list[str]  #: modalities the model could see
    kind: str | None = None
    dominant: str | None = None
    one_sided: bool | None = None
    text: str = ""
    #: the answer-slot (fast) label, with which the runtime closes the rationale; None when not measured
    slot_label: str | None = None
    #: share of statements of shown cues as strong as the input's; None: strengths unknown or none stated
    intensity: float | None = None

    @property
    def correct(self) -> bool:
        return self.prediction is not None and self.prediction == self.label

    def to_json(self) -> dict:
        return asdict(self)


def window_record(
    text: str,
    *,
    id: str,
    label: str,
    labels: Sequence[str],
    visible: Sequence[str],
    meta: Mapping | None = None,
    judge: ExplanationJudge | None = None,
    rationale: bool = True,
    slot_label: str | None = None,
    lexicon: CueLexicon | None = None,
) -> WindowRecord:
    """Read one generated trace (``text`` starts with ``<think>``) against what is known about its window.

    ``visible``: the modalities the model saw. ``meta``: the window's meta
    (``kind``, ``dominant``, ``one_sided``, ``cues``; empty for real data). ``rationale``: the text is a
    rationale, which owes a summary (False for a base model's cue description). ``slot_label``: the
    window's answer-slot label, read for the label-closed metrics. ``lexicon``: the cue words grounding,
    coverage and the default judge read (default: the judge's own lexicon, else the built-in vocabulary).
    """
    meta = meta or {}
    lexicon, judge = _judge_and_lexicon(judge, lexicon, labels)
    parsed = parse_trace(text, labels)
    visible = [m for m in visible]
    cues = meta.get("cues")
    ground = intensity = None
    if cues is not None:
        shown = {m: list(names) for m, names in cues.items() if m in visible}
        ground = grounding(parsed, shown, lexicon)
        weights = meta.get("intensities")
        if weights is not None:
            seen = {name for names in shown.values() for name in names}
            intensity = intensity_agreement(parsed, {c: w for c, w in weights.items() if c in seen}, lexicon)
        # coverage is owed for the visible modalities that show evidence
        evidence = [m for m in visible if shown.get(m)]
    else:
        evidence = list(visible)
    return WindowRecord(
        id=id,
        label=label,
        prediction=parsed.answer if parsed.answer in labels else None,
        answer=parsed.answer,
        implied=judged_emotion(judge, parsed),
        first_modality=parsed.first_modality,
        well_formed=parsed.well_formed,
        summary_problem=summary_problem(parsed, required=rationale),
        grounding=ground,
        coverage=coverage(parsed, evidence, lexicon),
        visible=visible,
        kind=meta.get("kind"),
        dominant=meta.get("dominant"),
        one_sided=meta.get("one_sided"),
        text=text,
        slot_label=slot_label,
        intensity=intensity,
    )


# --------------------------------------------------------------------------------------------- metrics


def _share(hits: int, total: int) -> float | None:
    return hits / total if total else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def reasoning_metrics(records: Sequence[WindowRecord], labels: Sequence[str]) -> dict:
    """Every metric over ``records`` (see the module docstring); a rate with nothing to measure is None."""
    n = len(records)
    correct = [r for r in records if r.correct]
    support = {lab: sum(r.label == lab for r in records) for lab in labels}
    recall = {
        lab: _share(sum(r.correct for r in records if r.label == lab), support[lab]) for lab in labels
    }
    supported = [v for v in recall.values() if v is not None]
    inconsistent = [r for r in correct if r.implied != r.prediction]
    agree = [r for r in records if r.dominant is not None and r.dominant in r.visible]
    agree_one = [r for r in agree if r.one_sided]
    grounded = [r.grounding for r in records if r.grounding is not None]
    intensities = [r.intensity for r in records if r.intensity is not None]
    slotted = [r for r in records if r.slot_label is not None]
    slot_correct = [r for r in slotted if r.slot_label == r.label]
    slot_inconsistent = [r for r in slot_correct if r.implied != r.slot_label]
    return {
        "windows": n,
        "correct": len(correct),
        "war": _share(len(correct), n),
        "uar": _mean(supported),
        "per_class_recall": recall,
        "support": support,
        "invalid_answers": sum(r.prediction is None for r in records),
        "icr": _share(len(inconsistent), len(correct)),
        "icr_inconsistent": len(inconsistent),
        "icr_no_cue": sum(r.implied is None for r in correct),
        "answer_explanation_agreement": _share(sum(r.implied is not None and r.implied == r.answer for r in records), n),
        "label_closed_icr": _share(len(slot_inconsistent), len(slot_correct)),
        "label_closed_icr_inconsistent": len(slot_inconsistent) if slotted else None,
        "label_closed_explanation_agreement": _share(
            sum(r.implied is not None and r.implied == r.slot_label for r in slotted), len(slotted)
        ),
        "first_segment_agreement": _share(sum(r.first_modality == r.dominant for r in agree), len(agree)),
        "first_segment_windows": len(agree),
        "first_segment_agreement_one_sided": _share(
            sum(r.first_modality == r.dominant for r in agree_one), len(agree_one)
        ),
        "first_segment_one_sided_windows": len(agree_one),
        "grounding_rate": _mean(grounded),
        "grounding_windows": len(grounded),
        "intensity_agreement": _mean(intensities),
        "intensity_windows": len(intensities),
        "coverage": _mean([r.coverage for r in records]),
        "format_valid": _share(sum(r.well_formed for r in records), n),
        "summary_faults": _share(sum(r.summary_problem is not None for r in records), n),
    }


def subset_metrics(records: Sequence[WindowRecord], labels: Sequence[str]) -> dict:
    """Metrics of the ``consistent`` and ``ambiguous_conflicting`` clips and per kind; ``{}`` without kinds.

    A subset with no windows is None.
    """
    kinds = sorted({r.kind for r in records if r.kind is not None})
    if not kinds:
        return {}

    def of(selected: list[WindowRecord]) -> dict | None:
        return reasoning_metrics(selected, labels) if selected else None

    return {
        "consistent": of([r for r in records if r.kind == "consistent"]),
        "ambiguous_conflicting": of([r for r in records if r.kind in HARD_KINDS]),
        "by_kind": {k: reasoning_metrics([r for r in records if r.kind == k], labels) for k in kinds},
    }


# --------------------------------------------------------------------------------------------- drift


@contextmanager
def eager_attention(model: MigrForEmotionReasoning) -> Iterator[None]:
    """Run the decoder with eager attention (the only kind that returns weights), then restore it."""
    decoder = model.decoder
    previous = decoder.config._attn_implementation
    if previous == "eager":
        yield
        return
    decoder.set_attn_implementation("eager")
    try:
        yield
    finally:
        decoder.set_attn_implementation(previous)


def _teacher_forced(
    model: MigrForEmotionReasoning,
    prompt_ids: torch.Tensor,
    pixel_values: torch.Tensor | None,
    audio_values: torch.Tensor | None,
    present: torch.Tensor | None,
    tokens: torch.Tensor,
):
    """One decoder pass over prompt + ``tokens`` with exactly the inputs and masks generation used
    (:func:`~migr_rt.generate.continuation_inputs`), returning the output with ``attentions``."""
    device = model.device
    ids, embeds, attention_mask = continuation_inputs(model, prompt_ids, tokens, pixel_values, audio_values)
    visible = model._visibility(
        ids, pixel_values, audio_values, present.to(device) if present is not None else None
    )
    bias, _ = model.attention_bias(ids, visible, attention_mask)
    positions = torch.arange(ids.shape[1], device=device)[None].expand_as(ids)
    with eager_attention(model):
        return model.decoder(inputs_embeds=embeds, attention_mask=bias, position_ids=positions, output_attentions=True)


@torch.no_grad()
def modality_attention(
    model: MigrForEmotionReasoning,
    prompt_ids: torch.Tensor,
    pixel_values: torch.Tensor | None,
    audio_values: torch.Tensor | None,
    present: torch.Tensor | None,
    generated: Generated,
    max_steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention share on each modality's placeholders per generated step.

    Returns ``shares`` ``(B, S, M)`` (mean over layers and heads of the
    attention mass the query producing token t puts on modality m's
    placeholder positions; 0 where the row did not reach step t) and
    ``reached`` ``(B, S)`` bool, with ``S = min(max_steps, longest row)``.
    """
    steps = min(max_steps, int(generated.lengths.max()) if generated.lengths.numel() else 0)
    bsz, plen = prompt_ids.shape
    num_m = model.config.num_modalities
    if steps == 0:
        return torch.zeros(bsz, 0, num_m), torch.zeros(bsz, 0, dtype=torch.bool)
    # the query for step t sits at plen - 1 + t; the last needed query is fed token steps - 2
    out = _teacher_forced(model, prompt_ids, pixel_values, audio_values, present, generated.tokens[:, : steps - 1])
    queries = slice(plen - 1, plen - 1 + steps)
    modality_pos = model.modality_token_masks(prompt_ids.to(model.device)).float()  # (B, M, plen)
    shares = torch.zeros(bsz, steps, num_m, device=model.device)
    for layer in out.attentions:
        probs = layer[:, :, queries, :plen].float().mean(dim=1)  # (B, S, plen), heads averaged
        shares += torch.einsum("bsk,bmk->bsm", probs, modality_pos)
    shares /= len(out.attentions)
    reached = torch.arange(steps, device=model.device)[None] < generated.lengths.to(model.device)[:, None]
    shares = shares * reached[..., None]
    return shares.cpu(), reached.cpu()


def drift_curve(shares: torch.Tensor, reached: torch.Tensor, modalities: Sequence[str]) -> list[dict]:
    """Per step: mean total and per-modality share over the windows that reach it, and their count."""
    curve = []
    for t in range(shares.shape[1]):
        rows = reached[:, t]
        count = int(rows.sum())
        if count == 0:
            break
        mean = shares[rows, t].double().mean(0)
        point = {"step": t, "windows": count, "total": float(mean.sum())}
        point.update({m: float(mean[i]) for i, m in enumerate(modalities)})
        curve.append(point)
    return curve


# --------------------------------------------------------------------------------------------- evaluation


@dataclass
class EvalProgress:
    done: int
    total: int
    elapsed_s: float


@dataclass
class EvalReport:
    labels: list[str]
    judge: str
    config: EvalConfig
    metrics: dict
    subsets: dict
    #: per step ``{"step", "windows", "total", "visual", "audio"}``; None when drift was not measured
    drift: list[dict] | None
    records: list[WindowRecord] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_json(self) -> dict:
        """Everything but the per-window records (those go to ``predictions.jsonl``)."""
        return {
            "windows": len(self.records),
            "labels": list(self.labels),
            "judge": self.judge,
            "config": asdict(self.config),
            "metrics": self.metrics,
            "subsets": self.subsets,
            "drift": self.drift,
            "elapsed_s": self.elapsed_s,
        }

    def predictions(self) -> list[dict]:
        return [r.to_json() for r in self.records]


def reasoning_prompt(model: MigrForEmotionReasoning, batch_size: int) -> torch.Tensor:
    """``(B, L)`` prefix + ``<think>``, where every rationale starts."""
    ids = prefix_ids(model.config) + [model.config.special_token_ids["think_start"]]
    return torch.tensor([ids] * batch_size, dtype=torch.long)


def mi_opening(model: MigrForEmotionReasoning, pixels, audio, present) -> list[str]:
    """The modality each rationale should open with: MI-dominant for the model's *predicted* label.

    This is what the runtime knows before it explains (its fast event): no
    ground truth is used. A window with one present modality opens with it.
    """
    res = score_modality_importance(model, pixels, audio, present=present)
    names = model.config.modalities
    return [names[int(d)] if int(d) >= 0 else names[0] for d in res.dominant]


def _decode(tokenizer, generated: Generated, eos_text: str) -> list[str]:
    texts = []
    for text in generated.texts(tokenizer):
        if eos_text and text.endswith(eos_text):
            text = text[: -len(eos_text)]
        texts.append("<think>" + text)  # the prompt held <think>
    return texts


@torch.no_grad()
def evaluate_reasoning(
    model: MigrForEmotionReasoning,
    tokenizer,
    windows: WindowSet,
    config: EvalConfig | None = None,
    judge: ExplanationJudge | None = None,
    on_progress: Callable[[EvalProgress], None] | None = None,
    lexicon: CueLexicon | None = None,
) -> EvalReport:
    """Generate (greedy) and score a rationale for every window; see the module docstring for the metrics.

    ``lexicon``: the cue words the judge, grounding and coverage read, and
    with which a real dataset's descriptions are read for the cues a window
    shows (default: the judge's own, else the built-in vocabulary; ``migr-rt
    eval`` passes the checkpoint's).
    """
    config = config or EvalConfig()
    if len(windows) == 0:
        raise ValueError("no windows to evaluate")
    labels = list(model.config.labels)
    modalities = list(model.config.modalities)
    lexicon, judge = _judge_and_lexicon(judge, lexicon, labels)
    gen_config = GenerationConfig(max_new_tokens=config.max_new_tokens, temperature=0.0)
    eos_text = tokenizer.convert_ids_to_tokens(model.config.special_token_ids["eos"]) or ""
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    records: list[WindowRecord] = []
    slot_hits = 0
    share_rows, reached_rows = [], []
    drift_steps = min(config.drift_steps, config.max_new_tokens)
    try:
        for first in range(0, len(windows), config.batch_size):
            idx = torch.arange(first, min(first + config.batch_size, len(windows)))
            pixels, audio, present, label_idx = windows.batch(idx)
            scored = score_modality_importance(model, pixels, audio, present=present, target=label_idx)
            slot_hits += int((scored.predicted == label_idx).sum())
            if config.mode == "describe":
                prompt = torch.tensor([prefix_ids(model.config)] * len(idx), dtype=torch.long)
                out = generate(model, prompt, pixels, audio, present=present,
                               config=replace(gen_config, stop_token_ids=(model.config.special_token_ids["eos"],)))
                texts = [f"{t}</think><answer>{labels[int(p)]}</answer>"  # _decode prepends <think>
                         for t, p in zip(_decode(tokenizer, out, eos_text), scored.predicted)]
            elif config.opening == "mi":
                opening = mi_opening(model, pixels, audio, present)
                tags = [f"{m}_start" for m in opening]
                tag_ids = torch.tensor([[model.config.special_token_ids[t]] for t in tags])
                prompt = torch.cat([reasoning_prompt(model, len(idx)), tag_ids], dim=1)
                out = generate(model, prompt, pixels, audio, present=present, config=gen_config)
                texts = [f"<think><{m}>" + t[len("<think>"):] for m, t in zip(opening, _decode(tokenizer, out, eos_text))]
            else:
                prompt = reasoning_prompt(model, len(idx))
                out = generate(model, prompt, pixels, audio, present=present, config=gen_config)
                texts = _decode(tokenizer, out, eos_text)
            for i, text, slot in zip(idx.tolist(), texts, scored.predicted.tolist()):
                seen = [m for m, p in zip(modalities, windows.present[i].tolist()) if p]
                records.append(
                    window_record(
                        text, id=windows.ids[i], label=labels[int(windows.labels[i])], labels=labels,
                        visible=seen, meta={**windows.meta[i], "cues": windows.shown_cues(i, lexicon),
                                            "intensities": windows.shown_intensities(i, lexicon)},
                        judge=judge, rationale=config.mode == "reason", slot_label=labels[int(slot)], lexicon=lexicon,
                    )
                )
            if config.drift:
                shares, reached = modality_attention(model, prompt, pixels, audio, present, out, drift_steps)
                share_rows.append(shares)
                reached_rows.append(reached)
            done = int(idx[-1]) + 1
            logger.debug("evaluated %d/%d windows", done, len(windows))
            if on_progress is not None:
                on_progress(EvalProgress(done, len(windows), time.perf_counter() - start))
    finally:
        model.train(was_training)
    drift = None
    if config.drift:
        width = max(s.shape[1] for s in share_rows)
        shares = torch.zeros(len(windows), width, len(modalities))
        reached = torch.zeros(len(windows), width, dtype=torch.bool)
        row = 0
        for s, r in zip(share_rows, reached_rows):  # batches decode to different lengths
            shares[row : row + len(s), : s.shape[1]] = s
            reached[row : row + len(r), : r.shape[1]] = r
            row += len(s)
        drift = drift_curve(shares, reached, modalities)
    return EvalReport(
        labels=labels,
        judge=repr(judge),
        config=config,
        metrics={**reasoning_metrics(records, labels), "answer_slot_accuracy": slot_hits / len(windows)},
        subsets=subset_metrics(records, labels),
        drift=drift,
        records=records,
        elapsed_s=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------------------------- outputs


def save_drift_plot(report: EvalReport, path: str | Path) -> Path:
    """Write the drift curve (attention share on modality tokens per generated step) as a PNG, atomically."""
    # A bare Figure on an Agg canvas: no pyplot, so the process's global backend is left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    curve = report.drift or []
    steps = [p["step"] for p in curve]
    ax.plot(steps, [p["total"] for p in curve], label="visual + audio", color="black")
    for modality, colour in (("visual", "tab:blue"), ("audio", "tab:orange")):
        if curve and modality in curve[0]:
            ax.plot(steps, [p[modality] for p in curve], label=modality, color=colour)
    if not curve:
        ax.text(0.5, 0.5, "no drift measured", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("generated step")
    ax.set_ylabel("attention share on modality tokens")
    ax.set_ylim(0.0, 1.0)
    ax.set_title("Modality attention per generated step")
    ax.grid(alpha=0.3)
    if curve:
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def write_report(report: EvalReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``eval.json``, ``predictions.jsonl`` and ``drift.png`` into ``out_dir`` (each atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "eval": write_text_atomic(out_dir / "eval.json", json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n"),
        "predictions": write_text_atomic(
            out_dir / "predictions.jsonl",
            "".join(json.dumps(p, sort_keys=True) + "\n" for p in report.predictions()),
        ),
        "drift": save_drift_plot(report, out_dir / "drift.png"),
    }
    return paths


class _FirstClips:
    """The first ``n`` clips of a source (sized, re-iterable)."""

    def __init__(self, clips, n: int) -> None:
        self.clips, self.n = clips, min(n, len(clips))

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for i, clip in enumerate(self.clips):
            if i >= self.n:
                return
            yield clip


def limit_source(source: DataSource, n: int) -> DataSource:
    """Only the first ``n`` clips of ``source`` (its own cache entry: the fingerprint records the limit)."""
    if n < 1:
        raise ValueError(f"limit must be >= 1, got {n}")
    if n >= len(source.clips):
        return source
    return DataSource(
        _FirstClips(source.clips, n), source.labels, f"{source.fingerprint}:first{n}",
        f"first {n} clips of {source.description}", source.texts,
    )


__all__ = [
    "EvalConfig",
    "EvalProgress",
    "EvalReport",
    "WindowRecord",
    "drift_curve",
    "eager_attention",
    "evaluate_reasoning",
    "limit_source",
    "modality_attention",
    "reasoning_metrics",
    "reasoning_prompt",
    "save_drift_plot",
    "subset_metrics",
    "window_record",
    "write_report",
]
