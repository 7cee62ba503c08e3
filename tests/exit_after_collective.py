"""Run by tests/test_distributed.py under ``accelerate launch``: a collective, then exit at once.

The group stays referenced until exit, as DTensor's caches keep it under
FSDP, so ``destroy_process_group`` cannot join gloo's worker threads. The
last all-reduce is not waited for, so a worker thread surely still holds its
Python-made tensor when the main thread is done: the race that CI hit by
chance (a finished collective released by the worker a moment too late),
made likely. Releasing the tensor takes the GIL; ``migr_rt.training.distributed``'s
exit hook must let the thread have it before finalisation, or the rank aborts
("terminate called without an active exception", -6; 2 exits in 3 without it).
"""

from __future__ import annotations

import torch

from migr_rt.training import distributed

dist = distributed.current()
assert dist.enabled, "launch with two processes"
GROUP = torch.distributed.group.WORLD  # held to the end, like FSDP's device mesh
values = torch.full((16384,), float(dist.rank + 1))
torch.distributed.all_reduce(values)
assert values[0].item() == sum(range(1, dist.world_size + 1)), values[0]
torch.distributed.all_reduce(values, async_op=True)  # the rank's last act
