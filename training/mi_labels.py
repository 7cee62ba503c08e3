"""MI labels: the base model's Modality Importance for every training window, kept inspectable.

MIGR stage 1 reorders each trace so it opens with the modality the *base
model* finds most important for the true label (not the generator's ground
truth, which real data does not have). The labels are written as JSON lines
beside the run so anyone can check what the reordering was based on, and how
often it matches the generator's dominant modality where that is known.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from migr_rt.training.windows import WindowSet

from migr_rt.atomic import write_text_atomic
from migr_rt.mi import score_modality_importance
from migr_rt.model.modeling import MigrForEmotionReasoning


@dataclass
class MILabel:
    id: str
    label: str
    mi: dict[str, float]  #: log p(label) drop when the modality is masked
    importance: dict[str, float]  #: softmax of MI over present modalities
    dominant: str | None  #: argmax MI over present modalities (None: nothing present)
    predicted: str  #: the base model's answer with everything visible
    true_dominant: str | None = None  #: the generator's dominant modality, where known
    kind: str | None = None
    one_sided: bool | None = None


@torch.no_grad()
def compute_mi_labels(model: MigrForEmotionReasoning, windows: WindowSet, batch_size: int = 64) -> list[MILabel]:
    """MI of the true label for every window, batched ``B x (1 + M)`` variants per forward."""
    model.eval()
    modalities = list(model.config.modalities)
    labels = list(model.config.labels)
    out: list[MILabel] = []
    for start in range(0, len(windows), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(windows)))
        pixels, audio, present, target = windows.batch(idx)
        res = score_modality_importance(model, pixels, audio, present=present, target=target)
        for row, i in enumerate(idx.tolist()):
            meta = windows.meta[i]
            dom = int(res.dominant[row])
            out.append(MILabel(
                id=windows.ids[i],
                label=labels[int(target[row])],
                mi={m: float(res.mi[row, k]) for k, m in enumerate(modalities)},
                importance={m: float(res.importance[row, k]) for k, m in enumerate(modalities)},
                dominant=modalities[dom] if dom >= 0 else None,
                predicted=labels[int(res.predicted[row])],
                true_dominant=meta.get("dominant"),
                kind=meta.get("kind"),
                one_sided=meta.get("one_sided"),
            ))
    return out


def mi_agreement(records: Sequence[MILabel]) -> dict[str, float | int | None]:
    """How often MI's dominant modality equals the generator's, overall and on one-sided clips."""
    known = [r for r in records if r.true_dominant is not None and r.dominant is not None]
    one_sided = [r for r in known if r.one_sided]

    def rate(rs: Sequence[MILabel]) -> float | None:
        return sum(r.dominant == r.true_dominant for r in rs) / len(rs) if rs else None

    return {"all": rate(known), "all_n": len(known), "one_sided": rate(one_sided), "one_sided_n": len(one_sided)}


def write_mi_labels(records: Sequence[MILabel], path: str | Path) -> Path:
    text = "".join(json.dumps(asdict(r), sort_keys=True) + "\n" for r in records)
    return write_text_atomic(Path(path), text)


def read_mi_labels(path: str | Path) -> list[MILabel]:
    path = Path(path)
    out = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            out.append(MILabel(**json.loads(line)))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: not an MI label record ({exc})") from exc
    return out
