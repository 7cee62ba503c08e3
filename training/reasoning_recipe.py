"""The ``baseline`` and ``migr`` recipes: base model -> trace SFT -> GRPO, resumable stage by stage.

=========  ==========================================  ============================================
recipe     stage 1 (SFT on traces)                     stage 2 (GRPO rewards)
=========  ==========================================  ============================================
baseline   segments visual first (R1-Omni cold start)  accuracy + format (:meth:`RewardWeights.baseline`)
migr       segments MI-dominant first (base model MI)  the modality-aware terms (:class:`RewardWeights`)
=========  ==========================================  ============================================

Both recipes build traces from the same cue descriptions; MIGR's open with
the base model's MI-dominant modality and conclude by naming it, the
baseline's open with the face and conclude without naming a modality (see
:mod:`.sft`). ``stages`` / ``sft_order`` /
``rewards`` give the ablations (stage-1-only, stage-2-only).

Layout: ``--out DIR`` receives the final checkpoint (with ``train_config.json``,
``metrics.json``, ``mi_labels.jsonl``); work in progress lives in
``DIR.work/``: the base checkpoint when the recipe trains one, the MI labels,
the SFT checkpoint and the latest GRPO step checkpoint (weights, optimiser
state and sampler state, all safetensors). A rerun with the same config
resumes after the last finished stage or GRPO checkpoint; a rerun with a
different config is refused instead of mixing two runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from migr_rt.training import distributed
from migr_rt.training.distributed import full_tensor, shard_like
from migr_rt.training.base_recipe import BaseRecipeConfig, load_or_extract, run_base_recipe, split_holdout
from migr_rt.training.grpo import GRPOBatch, GRPOConfig, frozen_copy, grpo_step, make_optimizer
from migr_rt.training.lexicon import LEXICON_FILE, CueLexicon, load_lexicon
from migr_rt.training.mi_labels import MILabel, compute_mi_labels, mi_agreement, read_mi_labels, write_mi_labels
from migr_rt.training.perception import PerceptionConfig, TrainProgress
from migr_rt.training.rewards import RewardContext, RewardWeights, applicable, score
from migr_rt.training.sft import SFTConfig, reasoning_prompt, train_sft
from migr_rt.training.sources import open_source
from migr_rt.training.synth.cues import LEXICON
from migr_rt.training.windows import WindowSet
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors

from migr_rt.atomic import write_text_atomic
from migr_rt.model import check_checkpoint_out, load_checkpoint, save_checkpoint
from migr_rt.model.checkpoint import CheckpointError

logger = logging.getLogger(__name__)

RECIPES = ("baseline", "migr")
STAGES = ("sft", "grpo")
#: Every step a run records as finished, in the order it runs them.
PIPELINE = ("base", "mi_labels", *STAGES)
#: Bumped when the work folder's layout changes (an older one is refused, never misread).
WORK_FORMAT = 1


@dataclass
class ReasoningRecipeConfig:
    recipe: str
    data: str
    out: str
    #: base (perception) checkpoint to start from; None trains one first (``base_steps``) into the work folder
    base: str | None = None
    base_steps: int = 1200
    val_fraction: float = 0.1
    cache_dir: str | None = None
    work_dir: str | None = None  #: stage outputs and resume state (default: ``<out>.work`` beside the checkpoint)
    card: str | None = None
    stages: tuple[str, ...] = STAGES
    sft_order: str | None = None  #: "visual" | "mi"; default from the recipe
    rewards: str | None = None  #: "baseline" | "migr"; default from the recipe
    reward_weights: RewardWeights | None = None  #: overrides ``rewards``' weights
    sft: SFTConfig = field(default_factory=SFTConfig)
    grpo: GRPOConfig = field(default_factory=lambda: GRPOConfig(steps=150, prompts_per_step=8, group_size=4,
                                                                lr=5e-5, beta=0.02, max_new_tokens=128,
                                                                answer_weight=0.5))
    checkpoint_every: int = 25  #: GRPO steps between resumable checkpoints
    seed: int = 0
    #: a cue lexicon JSON file (docs/lexicon.md) the rewards read generations with and the checkpoint
    #: stores; None: the built-in cue vocabulary
    lexicon: str | None = None

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {RECIPES}, got {self.recipe!r}")
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown or not self.stages:
            raise ValueError(f"stages must be a non-empty subset of {STAGES}, got {tuple(self.stages)}")
        self.stages = tuple(s for s in STAGES if s in self.stages)  # canonical order, no repeats
        if self.sft_order is None:
            self.sft_order = "visual" if self.recipe == "baseline" else "mi"
        if self.rewards is None:
            self.rewards = self.recipe
        if self.sft_order not in ("visual", "mi"):
            raise ValueError(f"sft_order must be 'visual' or 'mi', got {self.sft_order!r}")
        if self.rewards not in RECIPES:
            raise ValueError(f"rewards must be one of {RECIPES}, got {self.rewards!r}")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")

    def weights(self) -> RewardWeights:
        if self.reward_weights is not None:
            return self.reward_weights
        return RewardWeights.baseline() if self.rewards == "baseline" else RewardWeights()

    def cue_lexicon(self) -> CueLexicon:
        """The lexicon this run reads generations with (loaded and checked; :class:`LexiconError` if bad)."""
        return load_lexicon(self.lexicon) if self.lexicon else LEXICON

    def fingerprint(self, lexicon: CueLexicon | None = None) -> str:
        """What must match for a work folder to be resumed (paths of outputs and cards excluded).

        The lexicon counts by content, not path: an edited file must not resume a run rewarded with the old one.
        ``lexicon`` is the one the run loaded (read once, so the run and its fingerprint cannot disagree).
        """
        d = asdict(self)
        for key in ("out", "card", "cache_dir", "work_dir"):
            d.pop(key)
        if d["reward_weights"] is not None and not d["reward_weights"]["intensity"]:
            d["reward_weights"].pop("intensity")  # runs started before the intensity term keep their fingerprint
        if self.lexicon:
            d["lexicon"] = (lexicon or self.cue_lexicon()).digest
        else:
            d.pop("lexicon")  # runs started before lexicons keep their fingerprint
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def smoke_config(recipe: str, data: str, out: str, **overrides) -> ReasoningRecipeConfig:
    """Every stage for real, in seconds: what the tests and a first try on a new machine use."""
    cfg = dict(
        recipe=recipe, data=data, out=out, base_steps=30,
        sft=SFTConfig(steps=12, batch_size=8, warmup_steps=2),
        grpo=GRPOConfig(steps=3, prompts_per_step=4, group_size=3, lr=2e-5, beta=0.02, max_new_tokens=48),
        checkpoint_every=2,
    )
    cfg.update(overrides)
    return ReasoningRecipeConfig(**cfg)


ProgressFn = Callable[[str, TrainProgress], None]


@dataclass
class _Work:
    """The ``DIR.work`` folder: stage outputs and a state file recording what is finished."""

    root: Path

    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    def load(self) -> dict:
        if not self.state_path.is_file():
            return {}
        try:
            return json.loads(self.state_path.read_text())
        except ValueError as exc:
            raise ValueError(f"{self.state_path}: unreadable ({exc}); delete {self.root} to start over") from exc

    def save(self, state: dict) -> None:
        dist = distributed.current()
        if dist.is_main:
            write_text_atomic(self.state_path, json.dumps(state, indent=2, sort_keys=True) + "\n")
        dist.barrier()


def _save(model, tokenizer, path: Path, extra_files: dict | None = None) -> None:
    """Checkpoints are written by rank 0 only; every rank continues once it is on disk."""
    dist = distributed.current()
    model = dist.plain_model(model)  # FSDP: gathered on every rank, written by rank 0
    if dist.is_main:
        save_checkpoint(model, tokenizer, path, extra_files=extra_files)
    dist.barrier()


def _label_names(model, windows: WindowSet) -> list[str]:
    return [model.config.labels[int(i)] for i in windows.labels]


def reward_contexts(
    windows: WindowSet, labels: tuple[str, ...], dominant: list[str | None], lexicon: CueLexicon | None = None
) -> list[RewardContext]:
    """Per window: label, the dominant modality the rewards expect, present modalities, cues shown and how strong.

    Cues come from the corpus record or from descriptions that ``lexicon``
    can read (:meth:`~migr_rt.training.windows.WindowSet.shown_cues`); a
    modality is present when it is visible and shows at least one cue. Real
    data without such descriptions has neither, so the cue terms are not
    applicable. A shown cue's strength is the intensity word its description
    states it with (:meth:`~migr_rt.training.windows.WindowSet.shown_intensities`).
    """
    lexicon = lexicon or LEXICON
    out = []
    for i in range(len(windows)):
        cues = windows.shown_cues(i, lexicon) or {}
        # cues unknown (other words, or no descriptions): the first-segment term cannot ask for a cue here
        vocabulary = bool(cues)
        present_flags = dict(zip(("visual", "audio"), windows.present[i].tolist()))
        present = tuple(m for m in ("visual", "audio") if present_flags.get(m) and cues.get(m))
        shown = {name for m in present for name in cues[m]}
        strengths = {name: w for name, w in (windows.shown_intensities(i, lexicon) or {}).items() if name in shown}
        out.append(RewardContext(
            label=labels[int(windows.labels[i])], labels=labels, dominant=dominant[i], present=present,
            actual_cues={m: frozenset(cues[m]) for m in present}, vocabulary=vocabulary, lexicon=lexicon,
            intensities=strengths,
        ))
    return out


def _check_terms_apply(weights: RewardWeights, contexts: list[RewardContext]) -> None:
    """Refuse rewards that apply to no training window (every total 0, nothing to learn); warn about idle terms.

    A weighted term can be inapplicable everywhere: first_segment weighted
    under the baseline's rewards (no dominant modality), intensity on
    descriptions without intensity words, the cue terms on data the lexicon
    cannot read. Every rank holds every window's context, so every rank
    reaches the same verdict.
    """
    idle = [name for name in weights.active() if not any(applicable(name, c) for c in contexts)]
    if idle and len(idle) == len(weights.active()):
        raise ValueError(f"no weighted GRPO reward term ({', '.join(idle)}) applies to any training window; "
                         "weight accuracy or format, or give the data what these terms read")
    if idle:
        logger.warning("GRPO reward terms %s apply to no training window and reward nothing", ", ".join(idle))


def _save_grpo_state(path: Path, model, tokenizer, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                     step: int, history: list[dict]) -> None:
    """A resumable GRPO checkpoint: verified weights + optimiser moments and every rank's sampler state.

    Each rank samples its own prompts with its own stream, so all of them are
    gathered (a collective: every rank calls this) and kept by rank.
    """
    dist = distributed.current()
    states = dist.all_gather(generator.get_state())
    tensors: dict[str, torch.Tensor] = {f"sampler_state.{r}": state for r, state in enumerate(states)}
    scalars: dict[str, float] = {}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for k, p in enumerate(params):
        st = optimizer.state.get(p, {})
        for name, value in st.items():
            if torch.is_tensor(value) and value.ndim > 0:  # FSDP: whole moments, gathered on every rank
                tensors[f"{k}.{name}"] = full_tensor(value.detach()).cpu().contiguous()
            else:
                scalars[f"{k}.{name}"] = float(value)
    extra = {
        "grpo_state.json": json.dumps({"step": step, "scalars": scalars, "history": history,
                                       "world_size": dist.world_size}) + "\n",
        "optimizer.safetensors": save_safetensors(tensors),
    }
    _save(model, tokenizer, path, extra)


def _load_grpo_state(path: Path, model, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> tuple[int, list]:
    state = json.loads((path / "grpo_state.json").read_text())
    tensors = load_file(str(path / "optimizer.safetensors"))
    _restore_sampler(generator, tensors, state.get("world_size"), path)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for k, p in enumerate(params):
        st = {}
        for key, value in tensors.items():
            idx, name = key.split(".", 1)
            if int(idx) == k:
                st[name] = shard_like(value, p)  # FSDP: this rank's shard of the saved whole moment
        for key, value in state["scalars"].items():
            idx, name = key.split(".", 1)
            if int(idx) == k:
                st[name] = torch.tensor(value) if name == "step" else value
        if st:
            optimizer.state[p] = st
    return int(state["step"]), list(state["history"])


def _restore_sampler(generator: torch.Generator, tensors: dict[str, torch.Tensor], saved_world: int | None,
                     path: Path) -> None:
    """Give this rank its own saved sampler stream (and take every sampler entry out of ``tensors``)."""
    dist = distributed.current()
    states = {key: tensors.pop(key) for key in [k for k in tensors if k.startswith("sampler_state")]}
    own = states.get(f"sampler_state.{dist.rank}")
    if own is not None and saved_world == dist.world_size:
        generator.set_state(own)
    elif "sampler_state" in states:  # written before each rank's stream was kept: rank 0's only
        generator.set_state(states["sampler_state"])
        if dist.enabled:
            logger.warning("%s keeps one sampler stream (an older run): every rank resumes rank 0's", path)
    else:
        logger.warning("%s was written by %s processes, this run has %d: sampling restarts from the seed",
                       path, saved_world, dist.world_size)


def run_reasoning_recipe(
    recipe: ReasoningRecipeConfig,
    *,
    on_progress: ProgressFn | None = None,
    on_extract: Callable[[int, int | None], None] | None = None,
) -> dict:
    """Run (or resume) a baseline/migr recipe and write the final checkpoint to ``recipe.out``; return its metrics."""
    out = Path(recipe.out)
    check_checkpoint_out(out, keep={"--cache-dir": recipe.cache_dir, "--work-dir": recipe.work_dir})
    work = _Work(Path(recipe.work_dir) if recipe.work_dir else out.parent / f"{out.name}.work")
    # The work folder is created by its first write (atomic writes make their folder): a run that fails before
    # finishing anything (bad --data) leaves no empty folder behind.
    state = work.load()
    lexicon = recipe.cue_lexicon()
    fingerprint = recipe.fingerprint(lexicon)
    if state and (state.get("format") != WORK_FORMAT or state.get("fingerprint") != fingerprint):
        raise ValueError(
            f"{work.root} holds a run with a different config (or layout); delete it or choose another --out "
            "to start over (resuming it with this config would mix two runs)"
        )
    state.setdefault("format", WORK_FORMAT)
    state.setdefault("fingerprint", fingerprint)
    state.setdefault("finished", {})
    start = time.monotonic()
    cache_dir = Path(recipe.cache_dir) if recipe.cache_dir else out.parent / f"{out.name}.cache"
    source = open_source(recipe.data)
    _check_lexicon(recipe, lexicon, source)  # before any stage: a lexicon that reads nothing wastes the run

    # -- stage 0: the base model (given, or trained here) ------------------------------------
    base_path = Path(recipe.base) if recipe.base else work.root / "base"
    if recipe.base is None and "base" not in state["finished"]:
        logger.info("training the base (perception) model into %s", base_path)
        base_metrics = run_base_recipe(
            BaseRecipeConfig(data=recipe.data, out=str(base_path), val_fraction=recipe.val_fraction,
                             cache_dir=str(cache_dir),
                             perception=PerceptionConfig(steps=recipe.base_steps, seed=recipe.seed)),
            on_extract=on_extract,
            on_progress=(lambda p: on_progress("base", p)) if on_progress else None,
        )
        state["finished"]["base"] = {"val": base_metrics.get("val"), "seconds": base_metrics.get("seconds")}
        work.save(state)
    try:
        model, tokenizer = load_checkpoint(base_path)
    except CheckpointError as exc:
        raise ValueError(f"base checkpoint {base_path}: {exc}") from exc

    if tuple(model.config.labels) != source.labels:
        raise ValueError(f"base checkpoint labels {list(model.config.labels)} differ from the data's {list(source.labels)}")
    windows = load_or_extract(source, model.config, cache_dir, on_extract)
    train, _ = split_holdout(windows, recipe.val_fraction, recipe.seed)

    # -- MI labels from the base model (computed for both recipes, so they can be compared)
    mi_path = work.root / "mi_labels.jsonl"
    if "mi_labels" in state["finished"] and mi_path.is_file():
        mi = read_mi_labels(mi_path)
    else:
        mi = compute_mi_labels(model, train)  # deterministic: every rank computes the same labels
        if distributed.current().is_main:
            write_mi_labels(mi, mi_path)
        state["finished"]["mi_labels"] = {"agreement": mi_agreement(mi), "windows": len(mi)}
        work.save(state)
    if [r.id for r in mi] != train.ids:
        raise ValueError(f"{mi_path} does not match the training windows; delete {work.root} to start over")
    mi_dominant = [r.dominant for r in mi]
    grpo_pending = "grpo" in recipe.stages and "grpo" not in state["finished"]
    if grpo_pending:  # checked before stage 1 trains: rewards that reward nothing fail in seconds, not after SFT
        dominant = mi_dominant if recipe.rewards == "migr" else [None] * len(train)
        contexts = reward_contexts(train, tuple(model.config.labels), dominant, lexicon)
        _check_terms_apply(recipe.weights(), contexts)

    # -- stage 1: trace SFT --------------------------------------------------------------------
    sft_path = work.root / "sft"
    if "sft" in recipe.stages:
        if "sft" in state["finished"]:
            model, tokenizer = load_checkpoint(sft_path)
        else:
            first = mi_dominant if recipe.sft_order == "mi" else ["visual"] * len(train)
            sft_cfg = replace(recipe.sft, seed=recipe.seed)
            summary = mi_dominant if recipe.sft_order == "mi" else [None] * len(train)
            sft_metrics = train_sft(model, tokenizer, train, first, summary, sft_cfg,
                                    (lambda p: on_progress("sft", p)) if on_progress else None)
            model = distributed.current().plain_model(model)  # FSDP: the next stage starts from whole weights
            _save(model, tokenizer, sft_path)
            state["finished"]["sft"] = sft_metrics
            work.save(state)

    # -- stage 2: GRPO --------------------------------------------------------------------------
    if grpo_pending:
        model, history = _run_grpo(recipe, model, tokenizer, train, contexts, work, on_progress)
        state["finished"]["grpo"] = {"steps": len(history), "last": history[-1] if history else None,
                                     "reward_mean_first10": _mean(history[:10], "reward_mean"),
                                     "reward_mean_last10": _mean(history[-10:], "reward_mean")}
        work.save(state)
        step_ckpt = work.root / "grpo-step"
        if distributed.current().is_main and step_ckpt.exists():  # only once the finished stage is recorded
            # renamed first: a reader (or a kill mid-delete) never sees a half-deleted checkpoint under its name
            retired = work.root / f".grpo-step.old-{os.getpid()}"
            os.replace(step_ckpt, retired)
            shutil.rmtree(retired, ignore_errors=True)
    elif "grpo" in state["finished"]:
        model, tokenizer = load_checkpoint(work.root / "grpo")

    metrics = {
        "recipe": recipe.recipe,
        "stages": list(recipe.stages),
        "sft_order": recipe.sft_order,
        "rewards": recipe.rewards,
        "reward_weights": dict(recipe.weights().items()),
        "lexicon": {"name": lexicon.name, "digest": lexicon.digest, "cues": len(lexicon.cues)},
        # in pipeline order (a resumed run's state file is read back sorted by name)
        "finished": {s: state["finished"][s] for s in PIPELINE if s in state["finished"]},
        "train_windows": len(train),
        "seconds_this_run": time.monotonic() - start,
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "threads": torch.get_num_threads()},
    }
    extra = {
        "train_config.json": json.dumps({**asdict(recipe), "model": model.config.to_diff_dict()},
                                        indent=2, sort_keys=True, default=str) + "\n",
        "metrics.json": json.dumps(metrics, indent=2, sort_keys=True, default=str) + "\n",
        "mi_labels.jsonl": mi_path.read_text(),
        LEXICON_FILE: lexicon.to_json(),  # what the rewards read; the runtime's judge reads the same words
    }
    if recipe.card:
        extra["MODEL_CARD.md"] = Path(recipe.card).read_text()
    _save(model, tokenizer, out, extra)
    return metrics


def _check_lexicon(recipe: ReasoningRecipeConfig, lexicon: CueLexicon, source) -> None:
    """Check the run's lexicon against the data's labels and descriptions before any training.

    A lexicon that was asked for but reads the cues of none of the described
    clips would leave grounding, coverage and consistency without a single
    applicable window: an error now rather than an hour of training later.
    """
    from migr_rt.training.data_report import lexicon_coverage

    for warning in lexicon.check_labels(source.labels):
        logger.warning(warning)
    read = lexicon_coverage(source, lexicon)
    logger.info("lexicon %s reads the cues of %d of %d described clips", lexicon.name, read.readable, read.described)
    if not recipe.lexicon and read.readable < read.described:
        logger.warning(
            "the built-in cue vocabulary reads the cues of %d of %d described clips; the consistency, grounding "
            "and coverage rewards apply to those only (write a lexicon for the descriptions' words and pass "
            "--lexicon FILE, docs/lexicon.md)", read.readable, read.described)
    if recipe.lexicon and read.described and not read.readable:
        example = read.unreadable_example
        raise ValueError(
            f"lexicon {recipe.lexicon}: reads the cues of none of the {read.described} described clips of "
            f"{recipe.data} (e.g. {example['clip_id']}: {dict((m, t) for m, t in example.items() if m != 'clip_id')}); "
            "every non-empty description needs a phrase of its modality (check with migr-rt data SPEC --lexicon FILE)"
        )


def _mean(history: list[dict], key: str) -> float | None:
    values = [h[key] for h in history if key in h]
    return sum(values) / len(values) if values else None


def _run_grpo(
    recipe: ReasoningRecipeConfig,
    model,
    tokenizer,
    train: WindowSet,
    contexts: list[RewardContext],
    work: _Work,
    on_progress: ProgressFn | None,
) -> tuple[object, list[dict]]:
    """GRPO from ``model`` (resuming from the step checkpoint if there is one); the trained model and history.

    ``contexts``: each training window's reward context (:func:`reward_contexts`).
    """
    cfg = replace(recipe.grpo, seed=recipe.seed)
    weights = recipe.weights()
    prompt = torch.tensor(reasoning_prompt(model.config))

    def batch_at(step: int) -> GRPOBatch:
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + step)
        idx = dist.shard(torch.randperm(len(train), generator=gen)[: cfg.prompts_per_step])
        pixels, audio, present, labels = train.batch(idx)
        return GRPOBatch(prompt[None].repeat(len(idx), 1), pixels, audio, present, [contexts[i] for i in idx.tolist()],
                         labels)

    def reward_fn(sampled, ctxs):
        texts = ["<think>" + t for t in sampled.texts(tokenizer)]
        return score(texts, ctxs, weights)

    reference = frozen_copy(model) if cfg.beta > 0 else None  # before sharding: the reference stays whole
    dist = distributed.current()
    if cfg.prompts_per_step < dist.world_size:
        raise ValueError(f"prompts_per_step ({cfg.prompts_per_step}) must be >= the number of processes ({dist.world_size})")
    # each rank samples its own prompts' completions: its own sampler stream
    generator = torch.Generator(device=model.device).manual_seed(cfg.seed + 7919 * dist.rank)
    ckpt = work.root / "grpo-step"
    step, history = 0, []
    resume = (ckpt / "grpo_state.json").is_file()
    if resume:
        model, _ = load_checkpoint(ckpt)
    model = dist.prepare(model)  # FSDP: shard before the optimiser is made (else a no-op)
    optimizer = make_optimizer(model, cfg)
    if resume:
        step, history = _load_grpo_state(ckpt, model, optimizer, generator)
        logger.info("resuming GRPO at step %d/%d from %s", step, cfg.steps, ckpt)
    start, start_step = time.monotonic(), step
    running: dict[str, float] = {}
    while step < cfg.steps:
        stats = grpo_step(model, reference, optimizer, batch_at(step), reward_fn, cfg, generator)
        history.append(stats)
        step += 1
        for key, value in stats.items():
            if key.startswith("reward") or key in ("kl", "completion_len"):
                running[key] = value if key not in running else 0.8 * running[key] + 0.2 * value
        if step % recipe.checkpoint_every == 0 or step == cfg.steps:
            _save_grpo_state(ckpt, model, tokenizer, optimizer, generator, step, history)
        if on_progress is not None:
            elapsed = time.monotonic() - start
            done = step - start_step
            on_progress("grpo", TrainProgress(step, cfg.steps, stats["loss"], cfg.lr, elapsed,
                                              elapsed / done * (cfg.steps - step), dict(running)))
    model = dist.plain_model(model)  # FSDP: gathered (collective), then written once
    _save(model, tokenizer, work.root / "grpo")
    return model, history


__all__ = ["ReasoningRecipeConfig", "run_reasoning_recipe", "smoke_config", "reward_contexts", "MILabel"]
