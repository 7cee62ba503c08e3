"""TraceGrammar: the shape decoding keeps a rationale in, step by step and through the decoding loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_fixtures import random_inputs

from migr_rt.backends import greedy_decode
from migr_rt.backends.torch_backend import TorchBackend
from migr_rt.backends.trace_grammar import TraceGrammar
from migr_rt.model.layout import prefix_ids
from migr_rt.traces import parse_trace


@pytest.fixture(scope="module")
def cfg(tiny_model):
    return tiny_model[0].config


def ids(cfg, *names: str) -> list[int]:
    return [cfg.special_token_ids[n] for n in names]


def word(cfg, k: int = 0) -> int:
    """A plain vocabulary token (no tag, no label)."""
    taken = set(cfg.special_token_ids.values()) | {int(t) for t in cfg.label_token_ids}
    return [t for t in range(100) if t not in taken][k]


def prompt(cfg, *opening: str) -> list[int]:
    return prefix_ids(cfg) + ids(cfg, "think_start", *opening)


def step(grammar: TraceGrammar, cfg, ranked: list[int]) -> int:
    """One row's choice when the model ranks ``ranked`` first (best first) and everything else below."""
    logits = np.zeros((1, cfg.text_config.vocab_size), np.float32)
    for score, token in enumerate(reversed(ranked), start=1):
        logits[0, token] = 10.0 * score
    chosen = grammar.choose(logits, logits.argmax(-1))
    grammar.advance(chosen)
    return int(chosen[0])


def test_a_well_formed_trace_is_left_exactly_as_the_model_writes_it(cfg):
    grammar = TraceGrammar(cfg, [[True, True]], [prompt(cfg, "audio_start")])
    trace = [word(cfg), *ids(cfg, "audio_end", "visual_start"), word(cfg, 1), *ids(cfg, "visual_end", "summary_start"),
             word(cfg, 2), *ids(cfg, "summary_end", "think_end", "answer_start"), int(cfg.label_token_ids[3]),
             *ids(cfg, "answer_end")]
    for token in trace:
        argmax = np.array([token])
        assert grammar.choose(np.zeros((1, cfg.text_config.vocab_size)), argmax) is argmax
        grammar.advance(argmax)


def test_a_summary_is_closed_before_the_answer(cfg):
    # the bundled model's failure with the voice muted: "the visual evidence decides<answer>sad"
    grammar = TraceGrammar(cfg, [[True, False]], [prompt(cfg, "visual_start")])
    assert step(grammar, cfg, [word(cfg)]) == word(cfg)
    assert step(grammar, cfg, ids(cfg, "visual_end")) == ids(cfg, "visual_end")[0]
    assert step(grammar, cfg, ids(cfg, "summary_start")) == ids(cfg, "summary_start")[0]
    assert step(grammar, cfg, [*ids(cfg, "answer_start"), word(cfg, 1)]) == word(cfg, 1)  # the next best word
    assert step(grammar, cfg, [*ids(cfg, "answer_start", "summary_end")]) == ids(cfg, "summary_end")[0]
    # then the trace's closing is forced whatever the model ranks first
    assert step(grammar, cfg, [word(cfg), *ids(cfg, "answer_start")]) == ids(cfg, "think_end")[0]
    assert step(grammar, cfg, [word(cfg), *ids(cfg, "eos")]) == ids(cfg, "answer_start")[0]
    labels = [int(t) for t in cfg.label_token_ids]
    assert step(grammar, cfg, [word(cfg), labels[4], labels[1]]) == labels[4]  # the best label, not a word
    assert step(grammar, cfg, [labels[2], *ids(cfg, "summary_end")]) == ids(cfg, "answer_end")[0]


def test_segments_open_once_only_for_visible_modalities_and_close_with_their_own_tag(cfg):
    grammar = TraceGrammar(cfg, [[False, True]], [prompt(cfg)])
    # visual hidden: its tag is refused, audio's taken instead
    assert step(grammar, cfg, ids(cfg, "visual_start", "audio_start")) == ids(cfg, "audio_start")[0]
    # inside audio's segment: no other tag, its own end tag yes
    assert step(grammar, cfg, [*ids(cfg, "visual_start", "summary_start", "eos"), word(cfg)]) == word(cfg)
    assert step(grammar, cfg, ids(cfg, "audio_end")) == ids(cfg, "audio_end")[0]
    # audio was written: not again; the summary instead
    assert step(grammar, cfg, ids(cfg, "audio_start", "visual_start", "summary_start")) == ids(cfg, "summary_start")[0]


def test_rows_keep_their_own_traces(cfg):
    grammar = TraceGrammar(cfg, [[True, True], [True, False]], [prompt(cfg), prompt(cfg)])
    logits = np.zeros((2, cfg.text_config.vocab_size), np.float32)
    audio, visual = ids(cfg, "audio_start", "visual_start")
    logits[:, audio], logits[:, visual] = 2.0, 1.0
    chosen = grammar.choose(logits, logits.argmax(-1))
    assert chosen.tolist() == [audio, visual]


def test_prompts_it_does_not_know_and_bad_inputs(cfg):
    # a prompt without <think>: only hidden modalities' segments are refused; eos and other tags pass
    free = TraceGrammar(cfg, [[False, True]], [prefix_ids(cfg)])
    assert step(free, cfg, ids(cfg, "eos")) == ids(cfg, "eos")[0]
    assert step(free, cfg, ids(cfg, "visual_start", "audio_start")) == ids(cfg, "audio_start")[0]
    # a prompt ending with <answer> (the label prompt) is answered with a label
    answer = TraceGrammar(cfg, [[True, True]], [prefix_ids(cfg) + ids(cfg, "answer_start")])
    assert step(answer, cfg, [word(cfg), int(cfg.label_token_ids[0])]) == int(cfg.label_token_ids[0])
    with pytest.raises(ValueError, match="row 0's prompt opens the visual segment, but visual is hidden in that row"):
        TraceGrammar(cfg, [[False, True]], [prompt(cfg, "visual_start")])
    with pytest.raises(ValueError, match=r"visible must be \(rows, modalities\) = \(2, 2\)"):
        TraceGrammar(cfg, [[True, True]], [prompt(cfg), prompt(cfg)])


def test_the_decoding_loop_keeps_a_tag_happy_model_in_shape(tiny_model):
    """A backend whose model ranks every tag above every word still gives well-formed rationales, each modality's
    segment at most once and none for a hidden one; left free (``constrain=False``) it writes tags at random."""
    model, tokenizer = tiny_model
    cfg = model.config
    order = ids(cfg, "eos", "answer_start", "visual_start", "audio_start", "summary_start", "think_end",
                "answer_end", "audio_end", "visual_end", "summary_end", "pad")

    class TagHappy(TorchBackend):  # the model's own logits, with tags ranked above words in a fixed order
        def _rank(self, logits):
            logits = np.array(logits)
            logits[:, order] += 1e4 + np.arange(len(order), 0, -1)
            return logits

        def prefill(self, input_ids, tokens, visible):
            logits, state = super().prefill(input_ids, tokens, visible)
            return self._rank(logits), state

        def step(self, token, state):
            logits, state = super().step(token, state)
            return self._rank(logits), state

    presence = [[True, True], [True, False], [False, True]]
    pixels, audio = random_inputs(cfg, 3, seed=9)
    backend = TagHappy(model)
    start = torch.tensor([prefix_ids(cfg) + ids(cfg, "think_start")] * 3)
    for constrain in (True, False):
        out = greedy_decode(backend, start, backend.encode(pixels, audio), torch.tensor(presence), max_new_tokens=16,
                            constrain=constrain)
        texts = ["<think>" + tokenizer.decode(out.tokens[r, : out.lengths[r]].tolist()) for r in range(3)]
        parsed = [parse_trace(t, cfg.labels) for t in texts]
        if not constrain:
            assert not any(p.well_formed for p in parsed), texts
            continue
        for row, p in enumerate(parsed):
            assert p.well_formed and p.answer in cfg.labels, texts[row]
            shown = [m for m, _ in p.segments]
            assert shown == [m for m, seen in zip(cfg.modalities, presence[row]) if seen], texts[row]
