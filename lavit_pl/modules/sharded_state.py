"""The full (unsharded) state of an FSDP2-sharded model, for exports written by rank 0."""
from __future__ import annotations

import torch
from torch import nn


def gather_full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A collective: every rank must call it. Rank 0 gets every parameter and buffer as a full CPU
    tensor under the unsharded key names; other ranks get an empty dict (``cpu_offload``)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
