"""benchmarks/hidden_modality.py: both arms on a few real clips, and the free arm leaves the runtime's decoding as it was."""

from __future__ import annotations

import pytest
from benchmark_scripts import load_benchmark
from migr_rt.training.synth.corpus import SynthConfig, generate_corpus
from migr_rt.training.synth.reader import SynthCorpus

import migr_rt.backends.decode as decode
from migr_rt.predict import Predictor


@pytest.fixture(scope="module")
def script():
    return load_benchmark("hidden_modality")


def test_both_arms_on_a_few_clips(script, tmp_path):
    generate_corpus(SynthConfig(n=4, seed=2, workers=1), tmp_path / "corpus")
    kept = decode.TraceGrammar
    measured = script.measure(Predictor(), SynthCorpus(tmp_path / "corpus" / "manifest.jsonl"))
    assert decode.TraceGrammar is kept  # the free arm put the grammar back
    assert measured["clips"] == 4
    for hidden in script.HIDDEN:
        arms = measured["by_hidden"][hidden]
        assert arms["constrained"]["hidden_segment"] == 0
        assert arms["constrained"]["windows"] == arms["free"]["windows"] >= 3
        assert arms["constrained"]["metrics"]["war"] == arms["free"]["metrics"]["war"]  # the label closes both
    assert measured["by_hidden"]["visual"]["free"]["hidden_segment"] >= 2  # left free, it cites faces it never saw
    text = script.markdown({"checkpoint": "c", "backend": "b", "test_seed": 2, "generator_version": "1.3",
                            "measured": measured, "machine": {"cpu": "x", "cores": 2, "commit": "abc"}})
    assert "| rationales with a segment for the missing modality | 0 of" in text
