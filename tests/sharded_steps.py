"""Run by tests/test_distributed.py under ``accelerate launch``: five optimiser steps of a tiny model.

The same script runs data-parallel (``--multi_gpu``) and sharded
(``--use_fsdp``); the test compares the weights both write. The loss goes
through the methods the SFT and GRPO losses call (``embed_inputs``,
``hidden_states``, ``lm_logits``), so a sharded method that skipped its
all-gather or a gradient that skipped its reduction shows up as a difference.
"""

from __future__ import annotations

import sys

import torch
from model_fixtures import random_inputs, tiny_config
from safetensors.torch import save_file

from migr_rt.model import build_model
from migr_rt.model.layout import prefix_ids
from migr_rt.training import distributed
from migr_rt.training.optim import adamw


def main(out: str) -> None:
    torch.set_num_threads(1)
    dist = distributed.current()
    model, _ = build_model(tiny_config(), seed=0)
    cfg = model.config
    model = dist.prepare(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = adamw(params, 1e-3, 0.01)
    pixels, audio = random_inputs(cfg, 4, seed=3)
    first_special = min(cfg.special_token_ids.values())
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        text = torch.randint(20, first_special, (4, 6), generator=gen)
        ids = torch.cat([torch.tensor([prefix_ids(cfg)] * 4), text], dim=1)
        idx = dist.shard(torch.arange(4))
        x = ids[idx]
        hidden = model.hidden_states(model.embed_inputs(x, pixels[idx], audio[idx]), x,
                                     torch.ones(len(idx), cfg.num_modalities, dtype=torch.bool))
        logits = model.lm_logits(hidden)[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        dist.sync_gradients(params)
        dist.clip_grad_norm(list(model.parameters()), 1.0)
        opt.step()
    state = dist.full_state_dict(model)  # a collective under FSDP: every rank takes part
    if dist.is_main:
        tied = cfg.text_config.tie_word_embeddings
        save_file({k: v.contiguous() for k, v in state.items() if not (tied and k == "decoder.lm_head.weight")}, out)


if __name__ == "__main__":
    main(sys.argv[1])
