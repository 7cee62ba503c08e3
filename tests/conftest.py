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
