"""Shared pytest fixtures."""

from __future__ import annotations

import os

# Nothing in the suite may reach for the Hugging Face hub: fail fast instead.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
from model_fixtures import tiny_config  # noqa: E402

from migr_rt.model import build_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny model with real encoders and a real Qwen2 decoder, built once per session."""
    model, tokenizer = build_model(tiny_config(), tokenizer_texts=["brows drawn together", "the voice is loud"], seed=0)
    return model.eval(), tokenizer


@pytest.fixture(scope="session")
def bundled_onnx(tmp_path_factory):
    """The bundled checkpoint exported to an fp32 ONNX artifact by the CLI, once per session (~30 s)."""
    from click.testing import CliRunner

    from migr_rt.cli import main

    out = tmp_path_factory.mktemp("artifacts") / "default-fp32"
    result = CliRunner().invoke(main, ["export", "--format", "onnx", "--precision", "fp32", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out
