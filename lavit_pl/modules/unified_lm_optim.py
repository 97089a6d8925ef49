"""Stage-2 optimiser: AdamW with two learning rates (DESIGN.md section 4, paper section 4).

Groups (``name`` shows in the learning-rate monitor):

- ``llm_decay``: LLaMA matrices except the embedding and lm_head; lr ``lr_llm`` (paper 5e-5), wd.
- ``llm_no_decay``: LLaMA norms and biases, ``embed_tokens.weight`` and ``lm_head.weight``; lr
  ``lr_llm``, no wd.
- ``visual_decay`` / ``visual_no_decay``: the merger copy and ``vit_proj`` (matrices / the rest);
  lr ``lr_visual`` (paper 1.5e-4).

The new rows ([IMG], [/IMG], the K codes) live inside the embedding and lm_head matrices, which
sit in ``llm_no_decay``. They get the visual lr by **update scaling** (:class:`NewRowLearningRate`):
an optimizer step hook rescales the step's change of those rows by ``lr_visual / lr_llm`` (one
schedule factor multiplies every group, so that ratio holds at every step). AdamW's change of a parameter is ``-lr * (m_hat / (sqrt(v_hat) + eps)
+ wd * p)``, linear in lr, and the moments do not depend on lr, so this is exactly the step with
``lr_visual`` for those rows, while the text rows keep ``lr_llm``; the HF modules, their state-dict
keys and ``save_pretrained`` stay untouched (a row-split into two Parameters would change them).
Under FSDP2 the hook works on each rank's local shard (rows offset by the shard's global offset).
With ``freeze_llm`` (Table 7b) the text rows' gradients are zeroed by ``freeze_llm``'s hooks; their
AdamW moments stay 0 and, with no weight decay on that group, the rows do not move.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

EMBEDDING_SUFFIXES = ("embed_tokens.weight", "lm_head.weight")


def _decays(name: str, param: Tensor) -> bool:
    return param.ndim >= 2 and not name.endswith(EMBEDDING_SUFFIXES)


def unified_param_groups(llm: nn.Module, visual: Iterable[tuple[str, nn.Module]], lr_llm: float, lr_visual: float,
                         weight_decay: float) -> list[dict]:
    """Param groups as in the module docstring; ``visual``: (prefix, module) pairs (merger copy, vit_proj).

    Only parameters that require grad are included; each parameter appears once (tied heads too)."""
    seen: set[int] = set()

    def pick(named: Iterable[tuple[str, Tensor]], decay: bool) -> tuple[list[Tensor], list[str]]:
        params, names = [], []
        for name, p in named:
            if p.requires_grad and id(p) not in seen and _decays(name, p) == decay:
                seen.add(id(p))
                params.append(p)
                names.append(name)
        return params, names

    groups = []
    visual_named = [(f"{prefix}.{n}", p) for prefix, module in visual for n, p in module.named_parameters()]
    for name, named, lr in (("llm", list(llm.named_parameters()), lr_llm), ("visual", visual_named, lr_visual)):
        for decay in (True, False):
            params, names = pick(named, decay)
            if params:
                groups.append({"name": f"{name}_{'decay' if decay else 'no_decay'}", "params": params,
                               "param_names": names, "lr": lr, "weight_decay": weight_decay if decay else 0.0})
    return groups


def _local(tensor: Tensor) -> tuple[Tensor, int]:
    """(this process's rows of ``tensor``, global index of its first row): an FSDP2 DTensor is
    sharded along rows; a plain tensor is all here."""
    if hasattr(tensor, "to_local"):
        from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

        _, offset = compute_local_shape_and_global_offset(tensor.shape, tensor.device_mesh, tensor.placements)
        return tensor.to_local(), offset[0]
    return tensor, 0


def _local_rows(param: Tensor, first_row: int) -> Tensor | None:
    """The rows >= ``first_row`` of ``param`` held by this process (a view), or None if none."""
    data, offset = _local(param.data)
    start = max(first_row - offset, 0)
    return data[start:] if start < data.shape[0] else None


@torch.no_grad()
def zero_rows_below(matrices: Iterable[Tensor], stop_row: int) -> None:
    """Zero the gradient rows < ``stop_row`` (the text rows) of each matrix, on its local shard."""
    for matrix in matrices:
        if matrix.grad is not None:
            grad, offset = _local(matrix.grad)
            stop = min(max(stop_row - offset, 0), grad.shape[0])
            grad[:stop].zero_()


class NewRowLearningRate:
    """Give rows ``first_row..`` of ``matrices`` (members of a group with lr ``lr_llm``) the lr
    ``lr_visual``, by rescaling each optimizer step's change of those rows by ``lr_visual / lr_llm``.
    Every group follows the same schedule factor, so the ratio of base rates is the ratio at every step.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, matrices: Iterable[Tensor], first_row: int,
                 lr_llm: float, lr_visual: float):
        if lr_llm <= 0 or lr_visual < 0:
            raise ValueError(f"NewRowLearningRate: need lr_llm > 0 and lr_visual >= 0, got {lr_llm}, {lr_visual}")
        self.matrices = list({id(m): m for m in matrices}.values())
        in_optimizer = {id(p): g.get("lr") for g in optimizer.param_groups for p in g["params"]}
        for m in self.matrices:
            if in_optimizer.get(id(m)) != lr_llm:
                raise ValueError(f"NewRowLearningRate: a matrix of shape {tuple(m.shape)} is not in a group with lr {lr_llm}")
        self.first_row = first_row
        self.ratio = lr_visual / lr_llm
        self._before: list[Tensor | None] = []
        self.handles = [optimizer.register_step_pre_hook(self._snapshot), optimizer.register_step_post_hook(self._rescale)]

    def _snapshot(self, *_args) -> None:
        self._before = [None if (rows := _local_rows(m, self.first_row)) is None else rows.detach().clone()
                        for m in self.matrices]

    @torch.no_grad()
    def _rescale(self, *_args) -> None:
        for matrix, before in zip(self.matrices, self._before):
            rows = _local_rows(matrix, self.first_row)
            if rows is not None and before is not None:
                rows.copy_(before + (rows - before) * self.ratio)
        self._before = []

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
