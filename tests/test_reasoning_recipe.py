"""baseline/migr recipes: traces, MI labels, reward contexts, trace SFT, and real resumable runs."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner
from migr_rt.training.base_recipe import BaseRecipeConfig, load_or_extract, run_base_recipe
from migr_rt.training.grpo import GRPOConfig
from migr_rt.training.mi_labels import compute_mi_labels, mi_agreement, read_mi_labels, write_mi_labels
from migr_rt.training.perception import PerceptionConfig
from migr_rt.training.reasoning_recipe import ReasoningRecipeConfig, reward_contexts, run_reasoning_recipe
from migr_rt.training.rewards import RewardWeights
from migr_rt.training.sft import SFTConfig, sft_loss, trace_texts, train_sft
from migr_rt.training.sources import open_source
from migr_rt.training.synth.corpus import SynthConfig, generate_corpus
from migr_rt.training.synth.cues import CUES_BY_NAME
from model_fixtures import tiny_config
from safetensors.torch import load_file

from migr_rt.cli import main
from migr_rt.mi import score_modality_importance
from migr_rt.model import load_checkpoint
from migr_rt.traces import parse_trace


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("rcorpus") / "c"
    generate_corpus(SynthConfig(n=12, seed=31, workers=1), out)
    return out


@pytest.fixture(scope="module")
def base(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("rbase")
    recipe = BaseRecipeConfig(
        data=str(corpus), out=str(root / "base"), cache_dir=str(root / "cache"), val_fraction=0.1,
        perception=PerceptionConfig(steps=20, batch_size=8, lr=3e-3, warmup_steps=2, eval_every=20),
    )
    run_base_recipe(recipe, model_config=tiny_config())
    return root / "base", root / "cache"


@pytest.fixture(scope="module")
def windows(corpus, base):
    model, _ = load_checkpoint(base[0])
    return load_or_extract(open_source(corpus), model.config, base[1], None)


def test_trace_texts_order_visibility_and_unknown_descriptions():
    desc = [
        {"visual": "strongly lowered brows", "audio": "clearly loud voice"},
        {"visual": "strongly lowered brows", "audio": "clearly loud voice"},
        {"visual": None, "audio": None},
        {"visual": "", "audio": "clearly loud voice"},
    ]
    visible = torch.tensor([[True, True], [True, False], [True, True], [True, True]])
    texts = trace_texts(desc, ["angry"] * 4, ["audio", "audio", "visual", "visual"], ["audio", "audio", "audio", "visual"],
                        visible)
    first = parse_trace(texts[0])
    assert [m for m, _ in first.segments] == ["audio", "visual"] and first.well_formed
    assert first.summary.startswith("the audio evidence decides")
    hidden = parse_trace(texts[1])  # audio hidden: no audio segment, the summary falls back to what is shown
    assert [m for m, _ in hidden.segments] == ["visual"] and hidden.summary.startswith("the visual evidence")
    assert texts[2] is None
    empty_visual = parse_trace(texts[3])  # nothing notable in the face: no empty <visual></visual>
    assert [m for m, _ in empty_visual.segments] == ["audio"] and empty_visual.well_formed
    assert all(parse_trace(t).answer == "angry" for t in texts if t)


def test_mi_labels_match_the_reference_and_round_trip(base, windows, tmp_path):
    model, _ = load_checkpoint(base[0])
    records = compute_mi_labels(model, windows, batch_size=5)
    assert [r.id for r in records] == windows.ids
    pixels, audio, present, labels = windows.batch(torch.arange(len(windows)))
    ref = score_modality_importance(model, pixels, audio, present=present, target=labels)
    for k, r in enumerate(records):
        assert r.mi["visual"] == pytest.approx(float(ref.mi[k, 0]), abs=1e-5)
        assert r.mi["audio"] == pytest.approx(float(ref.mi[k, 1]), abs=1e-5)
        assert r.dominant == model.config.modalities[int(ref.dominant[k])]
        assert r.true_dominant == windows.meta[k]["dominant"]
    path = write_mi_labels(records, tmp_path / "mi.jsonl")
    assert read_mi_labels(path) == records
    agreement = mi_agreement(records)
    expected = sum(r.dominant == r.true_dominant for r in records) / len(records)
    assert agreement["all"] == pytest.approx(expected) and agreement["all_n"] == len(records)
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_mi_labels(tmp_path / "bad.jsonl")


def test_reward_contexts_take_cues_from_the_record_and_respect_visibility(windows):
    sub = windows.subset([0, 1])
    sub.present[1, 1] = False  # audio missing for the second window
    ctxs = reward_contexts(sub, ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"), ["audio", None])
    for i, ctx in enumerate(ctxs):
        cues = sub.meta[i]["cues"]
        assert ctx.label == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")[int(sub.labels[i])]
        for m in ctx.present:
            assert ctx.actual_cues[m] == frozenset(cues[m])
    assert ctxs[0].dominant == "audio" and ctxs[1].dominant is None
    assert "audio" not in ctxs[1].present
    words = {1.0: "strongly", 0.7: "clearly", 0.35: "slightly"}
    for i, ctx in enumerate(ctxs):  # the strength of each cue of a present modality, as its description words it
        names = {name for m in ctx.present for name in ctx.actual_cues[m]}
        assert set(ctx.intensities) == names and names
        for m in ctx.present:
            for name in ctx.actual_cues[m]:
                assert f"{words[ctx.intensities[name]]} {CUES_BY_NAME[name].phrase}" in sub.descriptions[i][m]
    assert not set(ctxs[1].intensities) & set(sub.meta[1]["cues"]["audio"])  # audio hidden: its cues are not asked


def test_trace_sft_learns_the_traces(base, windows):
    model, tok = load_checkpoint(base[0])
    first = ["visual"] * len(windows)
    answers = [model.config.labels[int(i)] for i in windows.labels]
    texts = trace_texts(windows.descriptions, answers, first, first)
    pixels, audio, present, labels = windows.batch(torch.arange(len(windows)))
    with torch.no_grad():
        before, _ = sft_loss(model, tok, pixels, audio, present, labels, texts, answer_weight=0.0)
    metrics = train_sft(model, tok, windows, first, first, SFTConfig(steps=25, batch_size=6, lr=3e-3, warmup_steps=2))
    with torch.no_grad():
        after, _ = sft_loss(model, tok, pixels, audio, present, labels, texts, answer_weight=0.0)
    assert float(after) < 0.7 * float(before)
    assert metrics["train_loss_parts"]["trace"] > 0


def _recipe(corpus, base, out, **kw) -> ReasoningRecipeConfig:
    return ReasoningRecipeConfig(
        recipe=kw.pop("recipe", "migr"), data=str(corpus), out=str(out), base=str(base[0]), cache_dir=str(base[1]),
        sft=SFTConfig(steps=4, batch_size=4, warmup_steps=1),
        grpo=GRPOConfig(steps=3, prompts_per_step=2, group_size=2, max_new_tokens=12, beta=0.05),
        checkpoint_every=2, **kw,
    )


class _Interrupt(Exception):
    pass


def test_migr_recipe_resumes_grpo_and_matches_an_uninterrupted_run(corpus, base, tmp_path):
    full = _recipe(corpus, base, tmp_path / "full")
    metrics = run_reasoning_recipe(full)
    assert set(metrics["finished"]) == {"mi_labels", "sft", "grpo"}
    ckpt = tmp_path / "full"
    model, _ = load_checkpoint(ckpt)  # verified: every written file is checksummed
    mi = [json.loads(line) for line in (ckpt / "mi_labels.jsonl").read_text().splitlines()]
    assert len(mi) == metrics["train_windows"] and {"mi", "dominant", "true_dominant"} <= set(mi[0])
    config = json.loads((ckpt / "train_config.json").read_text())
    assert config["recipe"] == "migr" and config["sft_order"] == "mi" and config["rewards"] == "migr"

    seen = []

    def stop_after_two(stage, p):
        seen.append((stage, p.step))
        if stage == "grpo" and p.step == 2:
            raise _Interrupt

    interrupted = _recipe(corpus, base, tmp_path / "resumed")
    with pytest.raises(_Interrupt):
        run_reasoning_recipe(interrupted, on_progress=stop_after_two)
    work = tmp_path / "resumed.work"
    assert (work / "grpo-step" / "grpo_state.json").is_file() and not (tmp_path / "resumed").exists()
    sft_bytes = (work / "sft" / "model.safetensors").read_bytes()
    seen.clear()
    resumed = run_reasoning_recipe(interrupted, on_progress=lambda stage, p: seen.append((stage, p.step)))
    assert seen == [("grpo", 3)], "SFT is not redone and GRPO continues at step 3"
    assert list(resumed["finished"]) == list(metrics["finished"]) == ["mi_labels", "sft", "grpo"]  # pipeline order
    assert (work / "sft" / "model.safetensors").read_bytes() == sft_bytes
    a = load_file(str(ckpt / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def test_a_different_config_is_refused_instead_of_mixed(corpus, base, tmp_path):
    run_reasoning_recipe(_recipe(corpus, base, tmp_path / "r", stages=("sft",)))
    other = _recipe(corpus, base, tmp_path / "r", stages=("sft",))
    other.sft = replace(other.sft, steps=5)
    with pytest.raises(ValueError, match="different config"):
        run_reasoning_recipe(other)


def test_baseline_uses_visual_first_traces_and_accuracy_format_rewards(corpus, base, tmp_path):
    cfg = _recipe(corpus, base, tmp_path / "b", recipe="baseline")
    assert cfg.sft_order == "visual" and cfg.weights().active() == ["accuracy", "format"]
    metrics = run_reasoning_recipe(cfg)
    last = metrics["finished"]["grpo"]["last"]
    assert set(k for k in last if k.startswith("reward/")) == {"reward/accuracy", "reward/format"}


def test_cli_smoke_preset_runs_every_stage(corpus, tmp_path):
    out = tmp_path / "smoke"
    result = CliRunner().invoke(main, ["train", "--recipe", "migr", "--smoke", "--data", str(corpus), "--out", str(out),
                                       "--cache-dir", str(tmp_path / "cache"), "--reward-weight", "intensity=0.5",
                                       "--reward-weight", "coherence=0"])
    assert result.exit_code == 0, result.output
    assert "[base] step" in result.output and "[sft] step" in result.output and "[grpo] step" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["finished"]) == {"base", "mi_labels", "sft", "grpo"}
    rewarded = {k for k in metrics["finished"]["grpo"]["last"] if k.startswith("reward/")}
    assert "reward/intensity" in rewarded and "reward/coherence" not in rewarded and "reward/consistency" in rewarded
    load_checkpoint(out)


@pytest.mark.parametrize("value, message", [
    ("intensty=0.5", "expected TERM=W with TERM one of"),
    ("intensity", "expected TERM=W"),
    ("intensity=lots", "'lots' is not a number"),
    ("intensity=-1", "must be a finite number >= 0"),
    ("intensity=nan", "must be a finite number >= 0"),
])
def test_bad_reward_weights_are_refused_before_anything_is_written(corpus, tmp_path, value, message):
    result = CliRunner().invoke(main, ["train", "--recipe", "migr", "--smoke", "--data", str(corpus),
                                       "--out", str(tmp_path / "x"), "--reward-weight", value])
    assert result.exit_code == 2 and "--reward-weight" in result.output and message in result.output, result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.work").exists()
    twice = CliRunner().invoke(main, ["train", "--recipe", "migr", "--data", str(corpus), "--out", str(tmp_path / "x"),
                                      "--reward-weight", "format=1", "--reward-weight", "format=2"])
    assert twice.exit_code == 2 and "given twice" in twice.output
    base = CliRunner().invoke(main, ["train", "--recipe", "base", "--data", str(corpus), "--out", str(tmp_path / "x"),
                                     "--reward-weight", "format=1"])
    assert base.exit_code == 2 and "--reward-weight applies to baseline and migr only, not to --recipe base" in base.output
    smoke = CliRunner().invoke(main, ["train", "--recipe", "base", "--data", str(corpus), "--out", str(tmp_path / "x"),
                                      "--smoke"])
    assert smoke.exit_code == 2 and "--smoke applies to baseline and migr only" in smoke.output
    assert "for a quick base run use --steps 3" in smoke.output


def test_train_help_names_every_reward_term():
    from migr_rt.training.rewards import TERMS

    help_text = " ".join(CliRunner().invoke(main, ["train", "--help"]).output.split())
    assert all(f" {term}," in help_text or f" {term}." in help_text for term in TERMS)


def test_reward_weights_count_in_the_fingerprint_but_an_unused_intensity_term_does_not():
    def fingerprint(weights: RewardWeights | None) -> str:
        return ReasoningRecipeConfig(recipe="migr", data="runs/synth-train", out="runs/x", base="runs/base",
                                     reward_weights=weights).fingerprint()

    # digests computed by the code before the intensity term existed (commit 423dd52): those runs still resume
    assert fingerprint(None) == "393157e8bba24ff7"
    assert fingerprint(RewardWeights()) == "de7c9c2c86f5870a"
    assert fingerprint(RewardWeights(coherence=0.5)) == "2f0cc999f4785dab"
    assert len({fingerprint(None), fingerprint(RewardWeights()), fingerprint(RewardWeights(intensity=0.5)),
                fingerprint(RewardWeights(intensity=1.0))}) == 4


def test_rewards_that_apply_to_no_window_are_refused_before_sft_trains(corpus, base, tmp_path):
    off = dict.fromkeys(("accuracy", "format", "consistency", "grounding", "intensity", "coverage", "coherence"), 0.0)
    cfg = _recipe(corpus, base, tmp_path / "o", rewards="baseline", reward_weights=RewardWeights(**off))
    with pytest.raises(ValueError, match="no weighted GRPO reward term \\(first_segment\\) applies"):
        run_reasoning_recipe(cfg)  # the baseline's rewards have no dominant modality to open with
    assert (tmp_path / "o.work" / "mi_labels.jsonl").is_file() and not (tmp_path / "o.work" / "sft").exists()


def test_grpo_refuses_rewards_that_apply_to_no_window_and_warns_about_idle_terms(caplog):
    from migr_rt.training.reasoning_recipe import _check_terms_apply
    from migr_rt.training.rewards import RewardContext

    unknown = [RewardContext(label="angry")] * 3  # no dominant modality, cues or strengths
    with pytest.raises(ValueError, match="first_segment, intensity"):
        _check_terms_apply(RewardWeights(**dict.fromkeys(
            ("accuracy", "format", "consistency", "grounding", "coverage", "coherence"), 0.0), intensity=1.0), unknown)
    with caplog.at_level("WARNING"):
        _check_terms_apply(RewardWeights(intensity=0.5), unknown)
    assert "first_segment, grounding, intensity, coverage apply to no training window" in caplog.text
    caplog.clear()
    known = [RewardContext(label="angry", dominant="audio", present=("audio",), actual_cues={"audio": {"voice_loud"}},
                           intensities={"voice_loud": 0.7})]
    with caplog.at_level("WARNING"):
        _check_terms_apply(RewardWeights(intensity=0.5), unknown + known)
    assert caplog.text == ""


def test_baseline_traces_conclude_without_naming_a_modality():
    desc = [{"visual": "strongly lowered brows", "audio": "clearly loud voice"}]
    text = trace_texts(desc, ["angry"], ["visual"], [None])[0]
    parsed = parse_trace(text)
    assert parsed.summary == "the visual and audio evidence together decide" and parsed.well_formed
    assert [m for m, _ in parsed.segments] == ["visual", "audio"]


def test_decision_weight_reweights_exactly_the_opening_tag(base, windows):
    """The weighted token is the one that predicts the first segment tag after <think>."""
    from migr_rt.training.sft import reasoning_prompt
    from torch.nn import functional as F

    model, tok = load_checkpoint(base[0])
    sub = windows.subset([0, 1, 2])
    answers = [model.config.labels[int(i)] for i in sub.labels]
    first = ["audio", "visual", "audio"]
    texts = trace_texts(sub.descriptions, answers, first, first)
    pixels, audio, present, labels = sub.batch(torch.arange(3))
    with torch.no_grad():
        l1, _ = sft_loss(model, tok, pixels, audio, present, labels, texts, answer_weight=0.0, decision_weight=1.0)
        l5, _ = sft_loss(model, tok, pixels, audio, present, labels, texts, answer_weight=0.0, decision_weight=5.0)
        prompt = torch.tensor(reasoning_prompt(model.config))
        out = model(prompt[None].repeat(3, 1), pixels, audio, modality_visible=present)
        tags = torch.tensor([model.config.special_token_ids[f"{m}_start"] for m in first])
        opening = F.cross_entropy(out.logits[:, -1].float(), tags, reduction="sum")
    n = sum(len(tok.encode(t[len("<think>"):], add_special_tokens=False)) + 1 for t in texts)  # + eos each
    # l5 = (n * l1 + 4 * opening) / (n + 4 * 3): the opening tags are counted four more times
    assert float(l5) == pytest.approx((n * float(l1) + 4 * float(opening)) / (n + 4 * 3), rel=1e-4)


def test_options_of_the_other_recipe_are_refused(corpus, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["train", "--recipe", "base", "--smoke", "--data", str(corpus), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--smoke applies to baseline and migr only, not to --recipe base" in result.output
    result = runner.invoke(main, ["train", "--recipe", "migr", "--lr", "0.1", "--data", str(corpus), "--out", str(tmp_path / "y")])
    assert result.exit_code == 2 and "--lr applies to --recipe base only, not to --recipe migr" in result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_stages_are_put_in_canonical_order(corpus, base, tmp_path):
    a = _recipe(corpus, base, tmp_path / "a", stages=("grpo", "sft", "sft"))
    b = _recipe(corpus, base, tmp_path / "a", stages=("sft", "grpo"))
    assert a.stages == ("sft", "grpo") and a.fingerprint() == b.fingerprint()
    with pytest.raises(ValueError, match="stages"):
        _recipe(corpus, base, tmp_path / "a", stages=("rl",))


def test_a_batch_with_nothing_to_train_still_backpropagates(base, windows):
    """No described window and no answer loss: a zero loss on the graph, not a crash (or a hung rank)."""
    model, tok = load_checkpoint(base[0])
    pixels, audio, present, labels = windows.batch(torch.arange(2))
    loss, parts = sft_loss(model, tok, pixels, audio, present, labels, [None, None], answer_weight=0.0)
    loss.backward()
    assert float(loss.detach()) == 0.0 and parts == {}
