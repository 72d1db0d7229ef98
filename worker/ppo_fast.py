"""Faster equivalents of three steps of `worker.ppo`, kept because each was measured to pay with networks this small.

Each computes what its plain counterpart computes (`nn.Sequential` forward, `clip_grad_norm_`, `Adam.step`);
tests/worker/test_ppo_fast.py checks each against it, so a torch release that changes a call they rely on (two
are private: `torch._foreach_norm`, `torch._fused_adam_`) fails there rather than changing results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn


def numpy_mlp(mlp: nn.Sequential) -> Callable[[np.ndarray], np.ndarray]:
    """A numpy snapshot of `mlp` (Linear layers with Tanh or ReLU between them): (B, in) float32 -> (B, out).

    A rollout step needs one tiny forward pass; in numpy it costs a fraction of torch's per-op dispatch. Take the
    snapshot while the parameters do not change (once per rollout): later updates do not reach it.

    Raises:
        ValueError: for a module other than Linear, Tanh or ReLU.
    """
    ops: list[tuple[str, np.ndarray | None, np.ndarray | None]] = []
    for module in mlp:
        if isinstance(module, nn.Linear):
            weight = module.weight.detach().cpu().numpy().T.copy()
            bias = module.bias.detach().cpu().numpy().copy()
            ops.append(("linear", weight, bias))
        elif isinstance(module, nn.Tanh | nn.ReLU):
            ops.append(("tanh" if isinstance(module, nn.Tanh) else "relu", None, None))
        else:
            raise ValueError(f"numpy_mlp handles Linear, Tanh and ReLU, not {type(module).__name__}")

    def forward(x: np.ndarray) -> np.ndarray:
        for op, weight, bias in ops:
            if op == "linear":
                x = x @ weight + bias
            elif op == "tanh":
                x = np.tanh(x)
            else:
                x = np.maximum(x, 0.0)
        return x

    return forward


def clip_grad_norm(grads: list[torch.Tensor], max_norm: float) -> None:
    """`nn.utils.clip_grad_norm_(params, max_norm)` on the params' gradients, in four foreach ops.

    Scales `grads` in place by min(1, max_norm / (global L2 norm + 1e-6)), as `clip_grad_norm_` does, without
    its per-call grouping by device and dtype.
    """
    total_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    clip_coef = torch.clamp(max_norm / (total_norm + 1e-6), max=1.0)
    torch._foreach_mul_(grads, clip_coef)


def adam_step(optimizer: torch.optim.Adam, params: Sequence[torch.Tensor]) -> None:
    """`optimizer.step()` for a one-group fused Adam, calling its kernel directly once the state exists.

    `Adam.step` spends most of its time in Python bookkeeping rather than in the fused kernel for networks this
    small. The state tensors stay the optimizer's own, so `optimizer.state_dict()` is unchanged. Falls back to
    `optimizer.step()` on the first step (no state yet), where a parameter has no gradient and where the kernel
    is missing.

    Args:
        optimizer: `torch.optim.Adam(..., fused=True)` with one param group, no amsgrad, not maximizing.
        params: the group's parameters.
    """
    state = optimizer.state
    grads = [p.grad for p in params if p.grad is not None]
    if not hasattr(torch, "_fused_adam_") or len(grads) < len(params) or any(p not in state for p in params):
        optimizer.step()
        return
    group = optimizer.param_groups[0]
    beta1, beta2 = group["betas"]
    steps = [state[p]["step"] for p in params]
    torch._foreach_add_(steps, 1)
    torch._fused_adam_(
        list(params),
        grads,
        [state[p]["exp_avg"] for p in params],
        [state[p]["exp_avg_sq"] for p in params],
        [],
        steps,
        lr=float(group["lr"]),
        beta1=beta1,
        beta2=beta2,
        weight_decay=group["weight_decay"],
        eps=group["eps"],
        amsgrad=False,
        maximize=False,
    )
