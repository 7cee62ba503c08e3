"""Perception stage: dropout masks, description targets, window cache, and a real (tiny) training run."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from data_fixtures import build_mafw
from migr_rt.training.base_recipe import BaseRecipeConfig, load_or_extract, run_base_recipe
from migr_rt.training.perception import PerceptionConfig, description_targets, modality_dropout
from migr_rt.training.sources import open_source
from migr_rt.training.synth.corpus import SynthConfig, generate_corpus
from migr_rt.training.synth.reader import SynthCorpus
from migr_rt.training.windows import extract_windows, load_windows, modality_targets, preprocessing_key, save_windows
from model_fixtures import tiny_config

from migr_rt.labels import MAFW_LABELS
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


@pytest.fixture(scope="module")
def val_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("val") / "v"
    generate_corpus(SynthConfig(n=7, seed=12, workers=1), out)
    return out


def test_base_recipe_trains_and_writes_a_loadable_checkpoint(corpus, val_corpus, tmp_path):
    progress = []
    card = tmp_path / "card.md"
    card.write_text("# a card\n")
    recipe = BaseRecipeConfig(
        data=str(corpus), out=str(tmp_path / "base"), val_data=str(val_corpus), card=str(card),
        perception=PerceptionConfig(steps=40, batch_size=8, lr=3e-3, warmup_steps=5, eval_every=40),
    )
    metrics = run_base_recipe(recipe, model_config=tiny_config(), on_progress=progress.append)
    model, tok = load_checkpoint(tmp_path / "base")
    assert model.config.labels == tiny_config().labels
    assert (tmp_path / "base.cache").is_dir(), "window cache kept beside, not inside, the checkpoint"
    assert (tmp_path / "base" / "MODEL_CARD.md").read_text() == "# a card\n"  # inside, and checksummed
    written = json.loads((tmp_path / "base" / "metrics.json").read_text())
    assert written["val"]["accuracy"] == pytest.approx(metrics["val"]["accuracy"])
    assert json.loads((tmp_path / "base" / "train_config.json").read_text())["recipe"] == "base"
    first, last = progress[0], progress[-1]
    assert last.step == 40 and last.eta_s == 0
    assert last.parts["answer"] < first.parts["answer"] and last.parts["describe"] < first.parts["describe"]
    assert metrics["val_windows"] == 7 and metrics["train_windows"] == 14


def test_window_cache_follows_the_corpus_content(tmp_path):
    """A corpus regenerated in the same folder must not be served the old corpus's windows."""
    cfg = tiny_config()
    folder = tmp_path / "c"
    generate_corpus(SynthConfig(n=3, seed=21), folder)
    first = load_or_extract(open_source(folder), cfg, tmp_path / "cache", None)
    shutil.rmtree(folder)
    generate_corpus(SynthConfig(n=3, seed=22), folder)
    second = load_or_extract(open_source(folder), cfg, tmp_path / "cache", None)
    assert first.ids != second.ids and all(i.startswith("synth-22-") for i in second.ids)
    assert load_or_extract(open_source(folder), cfg, tmp_path / "cache", None).ids == second.ids  # cached now


def test_recipe_takes_the_label_set_from_the_data(tmp_path):
    """MAFW's eleven classes train an eleven-class model (no label-set crash mid-extraction)."""
    build_mafw(tmp_path / "MAFW", {("train", 1): [(1, "contempt"), (2, "happiness"), (3, "anxiety")]})
    source = open_source(f"mafw:{tmp_path / 'MAFW'}?fold=1&split=train")
    assert source.labels == MAFW_LABELS
    recipe = BaseRecipeConfig(
        data=f"mafw:{tmp_path / 'MAFW'}?fold=1&split=train", out=str(tmp_path / "m"), val_fraction=0.34,
        perception=PerceptionConfig(steps=2, batch_size=2, warmup_steps=1, eval_every=2),
    )
    run_base_recipe(recipe, model_config=tiny_config(labels=list(MAFW_LABELS)))
    model, _ = load_checkpoint(tmp_path / "m")
    assert model.config.labels == list(MAFW_LABELS) and len(model.config.label_token_ids) == 11
    with pytest.raises(ValueError, match="differ from the data"):
        run_base_recipe(recipe, model_config=tiny_config())
