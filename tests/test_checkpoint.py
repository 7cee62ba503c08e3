"""Checkpoints: safetensors round trip, SHA-256 verification, pickle refusal, atomic replace."""

from __future__ import annotations

import json

import pytest
import torch
from model_fixtures import random_inputs

from migr_rt.model import CheckpointError, MigrForEmotionReasoning, load_checkpoint, save_checkpoint
from migr_rt.model.layout import scoring_batch


def _structural(config) -> dict:
    """Config fields that define the model (not where it was loaded from or its load dtype)."""
    d = config.to_dict()
    d.pop("_name_or_path", None)
    d["text_config"] = {k: v for k, v in d["text_config"].items() if k not in ("dtype", "_name_or_path")}
    return d


@pytest.fixture()
def saved(tiny_model, tmp_path):
    model, tok = tiny_model
    return save_checkpoint(model, tok, tmp_path / "ckpt", extra_files={"MODEL_CARD.md": "# card\n"})


def test_round_trip_is_exact(tiny_model, saved):
    model, tok = tiny_model
    loaded, loaded_tok = load_checkpoint(saved)
    ref = model.state_dict()
    got = loaded.state_dict()
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert _structural(loaded.config) == _structural(model.config)
    assert loaded_tok.get_vocab() == tok.get_vocab()
    pixels, audio = random_inputs(model.config, 2)
    ids = scoring_batch(model.config, 2)
    with torch.no_grad():
        assert torch.equal(model(ids, pixels, audio).logits, loaded(ids, pixels, audio).logits)


def test_folder_holds_safetensors_and_checksums_only(saved):
    names = sorted(p.name for p in saved.iterdir())
    assert "model.safetensors" in names and "checksums.json" in names and "MODEL_CARD.md" in names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    record = json.loads((saved / "checksums.json").read_text())
    assert set(record["sha256"]) == {n for n in names if n != "checksums.json"}


def test_tampered_weights_are_refused_by_name(saved):
    path = saved / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: SHA-256 mismatch"):
        load_checkpoint(saved)
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        MigrForEmotionReasoning.from_pretrained(saved)


def test_tampered_config_is_refused(saved):
    cfg = saved / "config.json"
    cfg.write_text(cfg.read_text().replace('"num_frames": 4', '"num_frames": 5'))
    with pytest.raises(CheckpointError, match=r"config\.json: SHA-256 mismatch"):
        load_checkpoint(saved)


def test_pickle_file_in_folder_is_refused(saved):
    torch.save({"x": torch.zeros(1)}, saved / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickle-format files"):
        load_checkpoint(saved)


def test_unrecorded_file_is_refused(saved):
    """An extra tokenizer file would silently change the tokenizer if it were read."""
    (saved / "special_tokens_map.json").write_text('{"bos_token": "<eos>"}')
    with pytest.raises(CheckpointError, match=r"not recorded in checksums\.json: \['special_tokens_map\.json'\]"):
        load_checkpoint(saved)


def test_a_folder_without_a_record_is_refused_before_scanning_it(tmp_path):
    (tmp_path / "venv" / "lib").mkdir(parents=True)
    (tmp_path / "venv" / "lib" / "x.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="checksums.json: missing"):
        load_checkpoint(tmp_path)


def test_missing_checksums_and_missing_files_are_refused(saved):
    (saved / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: recorded in checksums\.json but missing"):
        load_checkpoint(saved)
    (saved / "checksums.json").unlink()
    with pytest.raises(CheckpointError, match="checksums.json: missing"):
        load_checkpoint(saved)


def test_not_a_folder_is_refused_without_download(tmp_path):
    with pytest.raises(CheckpointError, match="never downloads"):
        load_checkpoint("Qwen/Qwen2.5-0.5B")
    with pytest.raises(CheckpointError, match="not a local checkpoint folder"):
        load_checkpoint(tmp_path / "nothing")


def test_checksum_entry_escaping_the_folder_is_refused(saved, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    record = json.loads((saved / "checksums.json").read_text())
    record["sha256"]["../outside.txt"] = "0" * 64
    (saved / "checksums.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="outside the checkpoint folder"):
        load_checkpoint(saved)


def test_save_over_existing_replaces_atomically(tiny_model, saved, monkeypatch):
    model, tok = tiny_model
    before = (saved / "model.safetensors").read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    # A save that fails midway leaves the previous checkpoint intact and loadable.
    monkeypatch.setattr(MigrForEmotionReasoning, "save_pretrained", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(model, tok, saved)
    monkeypatch.undo()
    assert (saved / "model.safetensors").read_bytes() == before
    load_checkpoint(saved)
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")], "no staging folders left behind"
    # A save that succeeds replaces it.
    save_checkpoint(model, tok, saved, extra_files={"MODEL_CARD.md": "# v2\n"})
    assert (saved / "MODEL_CARD.md").read_text() == "# v2\n"
    load_checkpoint(saved)


def test_save_refuses_a_folder_it_would_wipe_and_keeps_what_is_there(tiny_model, tmp_path, monkeypatch):
    model, tok = tiny_model
    user = tmp_path / "notes"
    user.mkdir()
    (user / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match=r"notes: holds files but is not a migr-rt checkpoint \(no checksums"):
        save_checkpoint(model, tok, user)
    assert [p.name for p in user.iterdir()] == ["notes.txt"] and (user / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"], "nothing staged beside it"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="file: exists and is not a folder"):
        save_checkpoint(model, tok, tmp_path / "file")
    # the folder a process runs in (or one above it) cannot be swapped out, even when it is a checkpoint
    ckpt = save_checkpoint(model, tok, tmp_path / "empty-before")  # an empty folder is fine: nothing to lose
    monkeypatch.chdir(ckpt)
    for here in (".", str(ckpt), ".."):
        with pytest.raises(FileExistsError, match="is the current folder or one above it"):
            save_checkpoint(model, tok, here)
    load_checkpoint(ckpt)


def test_an_empty_folder_is_written_into(tiny_model, tmp_path):
    model, tok = tiny_model
    (tmp_path / "empty").mkdir()
    load_checkpoint(save_checkpoint(model, tok, tmp_path / "empty"))


def test_missing_folders_files_and_artifacts_are_each_named_for_what_they_are(saved, tmp_path):
    with pytest.raises(CheckpointError, match="nothing: does not exist, not a local checkpoint folder"):
        load_checkpoint(tmp_path / "nothing")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(CheckpointError, match="a_file: is a file, not a local checkpoint folder"):
        load_checkpoint(tmp_path / "a_file")
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    (artifact / "manifest.json").write_text("{}")
    with pytest.raises(CheckpointError, match="is an exported artifact .*pass the checkpoint folder it was exported"):
        load_checkpoint(artifact)


def test_a_config_the_model_refuses_is_named_by_its_file(saved):
    from migr_rt.model.checkpoint import sha256_file

    config = json.loads((saved / "config.json").read_text())
    config["num_frames"] = 0
    (saved / "config.json").write_text(json.dumps(config))
    record = json.loads((saved / "checksums.json").read_text())
    record["sha256"]["config.json"] = sha256_file(saved / "config.json")  # edited and re-recorded: it verifies
    (saved / "checksums.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=r"ckpt/config\.json: MigrConfig\.num_frames must be a positive integer"):
        load_checkpoint(saved)
