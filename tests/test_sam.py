"""Sharpness-aware minimisation, the recipe part `swapwatch train --sam` adds."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from swapwatch.training.sam import SharpnessAware, batch_norm_statistics_kept  # noqa: E402


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.LazyLinear(1)
    )


def test_ascend_moves_the_weights_rho_uphill_and_descend_puts_them_back_exactly() -> None:
    net = small_net()
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0.0, 1.0] * 3)
    loss_of = lambda: nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(1), y)  # noqa: E731
    net.eval()  # the same function of the weights on both passes
    loss = loss_of()
    loss.backward()
    before = [p.detach().clone() for p in net.parameters()]
    sam = SharpnessAware(list(net.parameters()), rho=0.05)
    sam.ascend()
    moved = torch.cat([(p - b).flatten() for p, b in zip(net.parameters(), before, strict=True)])
    assert torch.linalg.vector_norm(moved).item() == pytest.approx(0.05, rel=1e-4)
    with torch.no_grad():
        assert loss_of().item() > loss.item()  # uphill
    sam.descend()
    for p, b in zip(net.parameters(), before, strict=True):
        assert torch.equal(p, b)
    with pytest.raises(RuntimeError):
        sam.descend()


def test_a_pass_inside_leaves_batch_norm_statistics_alone() -> None:
    net = small_net()
    net.train()
    x = torch.randn(4, 3, 8, 8) + 3.0
    net(x)  # materialise the lazy layer
    norm = net[1]
    kept = norm.running_mean.clone(), norm.running_var.clone()
    with batch_norm_statistics_kept(net):
        net(x)
    assert torch.equal(norm.running_mean, kept[0]) and torch.equal(norm.running_var, kept[1])
    assert norm.momentum == 0.1
    net(x)
    assert not torch.equal(norm.running_mean, kept[0])


def test_sam_steps_lower_the_loss_of_a_batch() -> None:
    net = small_net()
    x, y = torch.randn(8, 3, 8, 8), torch.tensor([0.0, 1.0] * 4)
    net(x)
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-2)
    sam = SharpnessAware(list(net.parameters()), rho=0.05)
    losses = []
    for _ in range(30):
        loss = nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(1), y)
        optimiser.zero_grad()
        loss.backward()
        sam.ascend()
        optimiser.zero_grad()
        with batch_norm_statistics_kept(net):
            nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(1), y).backward()
        sam.descend()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
