"""Known answers for the fast paths of worker.ppo: each must compute what its plain torch counterpart computes.

Two of them call private torch functions (`torch._foreach_norm`, `torch._fused_adam_`); a torch release that
changes either fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from worker.ppo_fast import adam_step, clip_grad_norm, numpy_mlp


def mlp(activation: type[nn.Module], seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), activation(), nn.Linear(16, 16), activation(), nn.Linear(16, 3))


def params_with_grads(seed: int, scale: float) -> list[nn.Parameter]:
    """Parameters of a small MLP, each with a gradient of about `scale`."""
    net = mlp(nn.Tanh, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    params = list(net.parameters())
    for p in params:
        p.grad = scale * torch.randn(p.shape, generator=generator)
    return params


@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU])
def test_numpy_mlp_matches_the_torch_forward(activation, rng):
    net = mlp(activation)
    x = rng.normal(size=(32, 5)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(numpy_mlp(net)(x), expected, rtol=0, atol=1e-6)


def test_numpy_mlp_is_a_snapshot_and_rejects_other_modules():
    net = mlp(nn.Tanh)
    forward = numpy_mlp(net)
    x = np.ones((1, 5), dtype=np.float32)
    before = forward(x)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    np.testing.assert_array_equal(forward(x), before)
    with pytest.raises(ValueError, match="not Sigmoid"):
        numpy_mlp(nn.Sequential(nn.Linear(2, 2), nn.Sigmoid()))


@pytest.mark.parametrize("scale", [10.0, 1e-3])  # clipped, and left alone
def test_clip_grad_norm_matches_torch(scale):
    ours, theirs = params_with_grads(0, scale), params_with_grads(0, scale)
    before = [p.grad.clone() for p in ours]
    clip_grad_norm([p.grad for p in ours], 0.5)
    nn.utils.clip_grad_norm_(theirs, 0.5)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-7)
    total = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in ours])))
    if scale > 1:
        assert total == pytest.approx(0.5, rel=1e-5)
    else:
        for a, b in zip(ours, before, strict=True):
            torch.testing.assert_close(a.grad, b, rtol=0, atol=1e-9)


@pytest.mark.parametrize("fused", [True, False])
def test_adam_step_matches_optimizer_step(fused):
    """Three steps (the first creates the state) with changing gradients and learning rate."""
    ours, theirs = params_with_grads(0, 1.0), params_with_grads(0, 1.0)
    ours_opt = torch.optim.Adam(ours, lr=1e-3, eps=1e-5, fused=True)
    theirs_opt = torch.optim.Adam(theirs, lr=1e-3, eps=1e-5, fused=fused)
    for step in range(3):
        for group in (*ours_opt.param_groups, *theirs_opt.param_groups):
            group["lr"] = 1e-3 * (1 - step / 3)
        if step > 0:
            for a, b, new in zip(ours, theirs, params_with_grads(step, 1.0), strict=True):
                a.grad, b.grad = new.grad.clone(), new.grad.clone()
        adam_step(ours_opt, ours)
        theirs_opt.step()
        for a, b in zip(ours, theirs, strict=True):
            # the same fused kernel: identical; the foreach implementation: equal up to float rounding
            torch.testing.assert_close(a, b, rtol=0, atol=0 if fused else 1e-6)
    assert float(ours_opt.state[ours[0]]["step"]) == 3.0
    assert ours_opt.state_dict()["state"].keys() == theirs_opt.state_dict()["state"].keys()
