"""Shared pytest fixtures."""

from __future__ import annotations

import pytest
from model_fixtures import tiny_config

from migr_rt.model import build_model


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny model with real encoders and a real Qwen2 decoder, built once per session."""
    model, tokenizer = build_model(tiny_config(), tokenizer_texts=["brows drawn together", "the voice is loud"], seed=0)
    return model.eval(), tokenizer
