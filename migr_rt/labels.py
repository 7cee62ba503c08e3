"""Label sets and modality names shared by the model, the data readers and the runtime.

The label set travels with every checkpoint (``MigrConfig.labels``), so these
tuples are only defaults: a model trained on MAFW carries MAFW's eleven.
"""

from __future__ import annotations

#: Modalities in the order their token blocks appear in the sequence.
MODALITIES: tuple[str, ...] = ("visual", "audio")

#: DFEW's seven classes, in our canonical (alphabetical) order.
DFEW_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

#: MAFW's eleven single-expression classes; the seven shared with DFEW keep DFEW's names.
MAFW_LABELS: tuple[str, ...] = DFEW_LABELS + ("contempt", "anxiety", "helplessness", "disappointment")


def validate_labels(labels: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Check a label set before it becomes part of a vocabulary.

    Labels become single tokens of the tokenizer, so they must be unique,
    non-empty and free of whitespace.
    """
    out = tuple(labels)
    if not out:
        raise ValueError("label set is empty")
    for lab in out:
        if not isinstance(lab, str) or not lab or any(ch.isspace() for ch in lab) or "<" in lab or ">" in lab:
            raise ValueError(f"invalid label {lab!r}: labels must be non-empty words without whitespace or '<', '>'")
    if len(set(out)) != len(out):
        dupes = sorted({x for x in out if out.count(x) > 1})
        raise ValueError(f"duplicate labels in label set: {dupes}")
    return out
