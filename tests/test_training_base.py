"""Perception stage: dropout masks, description targets, window cache, and a real (tiny) training run."""

from __future__ import annotations

import json

import pytest
import torch
from migr_rt.training.base_recipe import BaseRecipeConfig, run_base_recipe
from migr_rt.training.perception import PerceptionConfig, description_targets, modality_dropout
from migr_rt.training.synth.corpus import SynthConfig, generate_corpus
from migr_rt.training.synth.reader import SynthCorpus
from migr_rt.training.windows import extract_windows, load_windows, modality_targets, preprocessing_key, save_windows
from model_fixtures import tiny_config

from migr_rt.media import Clip
from migr_rt.model import load_checkpoint


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "c"
    generate_corpus(SynthConfig(n=14, seed=11, workers=1), out)
    return out


def test_modality_dropout_hides_at_most_one_and_never_the_last():
    gen = torch.Generator().manual_seed(0)
    both = torch.ones(1000, 2, dtype=torch.bool)
    vis = modality_dropout(both, 1.0, gen)
    assert (vis.sum(1) == 1).all()
    assert 0.4 < vis[:, 0].float().mean() < 0.6  # either modality gets hidden
    single = torch.tensor([[True, False]] * 50)
    assert torch.equal(modality_dropout(single, 1.0, gen), single)
    assert torch.equal(modality_dropout(both, 0.0, gen), both)


def test_description_targets_layout(tiny_model):
    model, tok = tiny_model
    descs = [{"visual": "brows drawn together", "audio": ""}, {"visual": None, "audio": "x"}]
    targets = description_targets(model.config, tok, descs)
    assert targets.ids[1] == [] and targets.owner[1] == []
    text = tok.decode(targets.ids[0])
    assert text.endswith("<visual>brows drawn together</visual><audio></audio><eos>")
    owner = targets.owner[0]
    visual_tokens = [t for t, o in zip(targets.ids[0], owner) if o == 0]
    assert tok.decode(visual_tokens) == "<visual>brows drawn together</visual>"
    assert owner[-1] == -1 and owner[0] == -2


def test_modality_targets_follow_each_modalitys_own_evidence():
    labels = ["angry", "happy", "neutral", "sad"]
    index = {lab: i for i, lab in enumerate(labels)}
    conflicting = Clip("c", None, None, 25, 16000, label="happy",
                       meta={"visual": {"emotion": "happy", "strength": 0.8}, "audio": {"emotion": "sad", "strength": 0.4}})
    assert modality_targets(conflicting, labels, index) == [1, 3]
    weak = Clip("w", None, None, 25, 16000, label="angry",
                meta={"visual": {"emotion": "angry", "strength": 0.9}, "audio": {"emotion": "angry", "strength": 0.1}})
    assert modality_targets(weak, labels, index) == [0, -1]
    real = Clip("r", None, None, 25, 16000, label="sad", meta={"dataset": "dfew"})
    assert modality_targets(real, labels, index) == [3, 3]


def test_window_cache_round_trip(corpus, tmp_path):
    cfg = tiny_config()
    windows = extract_windows(SynthCorpus(corpus / "manifest.jsonl"), cfg, detector=None)
    assert windows.crops.shape == (14, cfg.num_frames, cfg.face_size, cfg.face_size, 3)
    assert windows.descriptions[0]["visual"] is not None
    key = preprocessing_key(cfg)
    path = save_windows(windows, tmp_path / "w.safetensors", key)
    back = load_windows(path, key)
    assert torch.equal(back.crops, windows.crops) and torch.equal(back.modality_labels, windows.modality_labels)
    assert back.ids == windows.ids and back.descriptions == windows.descriptions
    assert load_windows(path, {**key, "face_size": 999}) is None  # other preprocessing: rebuilt, not reused


def test_label_outside_the_model_label_set_is_an_error():
    cfg = tiny_config(labels=["happy", "sad"])
    clip = Clip("x", None, None, 25, 16000, label="angry")
    with pytest.raises(ValueError, match="'angry' is not in the model's label set"):
        extract_windows([clip], cfg, None)


def test_base_recipe_trains_and_writes_a_loadable_checkpoint(corpus, tmp_path):
    progress = []
    recipe = BaseRecipeConfig(
        data=str(corpus), out=str(tmp_path / "base"), val_data=str(corpus),
        perception=PerceptionConfig(steps=40, batch_size=8, lr=3e-3, warmup_steps=5, eval_every=40),
    )
    metrics = run_base_recipe(recipe, model_config=tiny_config(), on_progress=progress.append)
    model, tok = load_checkpoint(tmp_path / "base")
    assert model.config.labels == tiny_config().labels
    assert (tmp_path / "base.cache").is_dir(), "window cache kept beside, not inside, the checkpoint"
    written = json.loads((tmp_path / "base" / "metrics.json").read_text())
    assert written["val"]["accuracy"] == pytest.approx(metrics["val"]["accuracy"])
    assert json.loads((tmp_path / "base" / "train_config.json").read_text())["recipe"] == "base"
    first, last = progress[0], progress[-1]
    assert last.step == 40 and last.eta_s == 0
    assert last.parts["answer"] < first.parts["answer"] and last.parts["describe"] < first.parts["describe"]
    # the training set is tiny: the model must at least fit it better than chance
    assert metrics["val"]["accuracy"] > 1.5 / len(model.config.labels)
