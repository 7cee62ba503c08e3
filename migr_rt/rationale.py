"""The rationale prompt and its text, shared by :class:`~migr_rt.predict.Predictor` and the streaming runtime.

MIGR's point is the opening: the rationale starts with the modality MI
finds dominant (``opening``), forced by appending its start tag to the
prompt; ``None`` lets the model choose.

The closing is the other forced part: the rationale's ``<answer>`` is the
window's label (see :class:`~migr_rt.backends.decode.AnswerAnchor`), with
the model's own choice at that point kept beside it. Closing with the label
does not make the explanation before it argue for that label: a judge reads
the explanation's cue statements (:func:`explanation_verdict`) so a caller
can tell when it does not.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from migr_rt.backends.decode import AnswerAnchor
from migr_rt.model.layout import prefix_ids
from migr_rt.traces import ParsedTrace

if TYPE_CHECKING:
    from migr_rt.model.config import MigrConfig

logger = logging.getLogger(__name__)


def rationale_prompt(config: MigrConfig, opening: str | None) -> tuple[list[int], str]:
    """Prompt ids (prefix, ``<think>``, and the opening modality's tag if any) and the text those tags stand for."""
    ids = prefix_ids(config) + [config.special_token_ids["think_start"]]
    if opening is None:
        return ids, ""
    if opening not in config.modalities:
        raise ValueError(f"opening modality {opening!r} is not one of {config.modalities}")
    ids.append(config.special_token_ids[f"{opening}_start"])
    return ids, f"<{opening}>"


#: How a rationale's ``<answer>`` is chosen: the window's fast label, or whatever the model writes.
ANSWER_MODES = ("label", "model")


def check_answer_mode(answer: str) -> str:
    if answer not in ANSWER_MODES:
        raise ValueError(f"rationale answer must be one of {ANSWER_MODES}, got {answer!r}")
    return answer


def label_token_id(config: MigrConfig, label: str) -> int:
    """The token id of ``label`` (labels are single tokens of the checkpoint's vocabulary)."""
    labels = list(config.labels)
    if label not in labels:
        raise ValueError(f"label {label!r} is not one of this model's labels {labels}")
    return int(config.label_token_ids[labels.index(label)])


def label_of(config: MigrConfig, token_id: int) -> str | None:
    """The label a token id stands for; None for any other token (a tag, eos, a word) and for -1 (none written)."""
    ids = [int(t) for t in config.label_token_ids]
    return config.labels[ids.index(token_id)] if token_id in ids else None


def rationale_text(tokenizer, config: MigrConfig, generated: Sequence[int], lead: str) -> str:
    """The rationale as text: ``<think>``, the forced opening tag, then the generated tokens (eos dropped)."""
    eos = config.special_token_ids["eos"]
    ids = [int(t) for t in generated]
    if ids and ids[-1] == eos:
        ids = ids[:-1]
    return "<think>" + lead + tokenizer.decode(ids)


def resolve_judge(config: MigrConfig, judge=None, folder: str | Path | None = None):
    """``judge`` checked, or by default the cue judge over the lexicon the model was trained with.

    ``folder`` is the checkpoint or artifact the model came from: its stored
    lexicon (``lexicon.json``, or the manifest's ``extra["lexicon"]``) is the
    one its rewards read, so verdicts here read the same words. Folders
    without one used the built-in cue vocabulary. An explanation in words the
    lexicon does not know states no cue, so its verdict is None, not a guess.
    """
    from migr_rt.training.judge import CueJudge, ExplanationJudge
    from migr_rt.training.lexicon import stored_lexicon

    if judge is None:
        judge = CueJudge(config.labels, stored_lexicon(folder) if folder is not None else None)
        for warning in judge.lexicon.check_labels(config.labels):  # raises if a phrase names a label
            logger.warning(warning)
        return judge
    if not isinstance(judge, ExplanationJudge):
        raise TypeError(f"judge must have implied_emotion(text) and emotion_scores(text) (an ExplanationJudge), "
                        f"got {type(judge).__name__}")
    return judge


def explanation_verdict(judge, parsed: ParsedTrace) -> tuple[str | None, bool | None]:
    """``(emotion the explanation argues for, whether that is the answer)``; ``(None, None)`` if unknown.

    Unknown: the explanation states no cue the judge knows, or the rationale
    has not closed its answer (cut short by ``max_new_tokens`` or a newer
    window): a verdict on evidence it never finished stating would mislead.
    ``judge`` reads cue statements, never a named label.
    """
    from migr_rt.training.judge import judged_emotion

    if parsed.answer is None:
        return None, None
    emotion = judged_emotion(judge, parsed)
    return emotion, (None if emotion is None else emotion == parsed.answer)


def answer_anchor(config: MigrConfig, label: str, answer: str) -> AnswerAnchor | None:
    """What closes a one-row rationale: ``label`` for ``answer="label"``, nothing for ``"model"`` (its own)."""
    check_answer_mode(answer)
    return AnswerAnchor(np.array([label_token_id(config, label)])) if answer == "label" else None


def read_closing(
    config: MigrConfig, judge, parsed: ParsedTrace, anchor: AnswerAnchor | None, *, cancelled: bool = False,
) -> tuple[str | None, str | None, bool | None]:
    """``(model_answer, explanation_emotion, consistent)`` of a decoded one-row rationale.

    ``model_answer``: the label the model chose after ``<answer>`` (the
    anchor's record, or the text's own answer without one); None when it
    chose no label. A ``cancelled`` rationale gets no verdict: it was cut off
    before it finished stating its evidence.
    """
    if anchor is not None:
        own = label_of(config, int(anchor.model_ids[0]))
    else:
        own = parsed.answer if parsed.answer in config.labels else None
    emotion, consistent = (None, None) if cancelled else explanation_verdict(judge, parsed)
    return own, emotion, consistent
