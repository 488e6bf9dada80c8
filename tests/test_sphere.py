"""The unit sphere's two terms (`swapwatch train --uniformity/--alignment`), by hand."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from swapwatch.training.model import SwapDetector, detector_for_run  # noqa: E402
from swapwatch.training.sphere import (  # noqa: E402
    SphereLoss,
    alignment,
    captured_unit_features,
    uniformity,
)


def unit(*rows: list[float]) -> torch.Tensor:
    x = torch.tensor(rows, dtype=torch.float32)
    return x / x.norm(dim=1, keepdim=True)


def test_alignment_is_the_mean_squared_distance_of_pairs_with_one_label() -> None:
    x = unit([1, 0], [1, 0], [0, 1], [1, 1]).requires_grad_()
    labels = torch.tensor([0.0, 0.0, 1.0, 1.0])
    # Reals: the same point (0). Fakes: 45 degrees apart, |a - b|^2 = 2 - 2 cos 45.
    aligned = alignment(x, labels)
    assert aligned.item() == pytest.approx((0 + 2 - math.sqrt(2)) / 2, abs=1e-6)
    aligned.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()  # where two features coincide too
    assert x.grad[2:].abs().sum() > 0 and x.grad[:2].abs().sum() == 0  # only the fakes differ
    lonely = alignment(x[1:3], labels[1:3])  # one of each label: no pair
    assert lonely.item() == 0.0 and lonely.requires_grad


def test_uniformity_is_lower_for_features_spread_over_the_sphere() -> None:
    collapsed = unit([1, 0], [1, 0.01], [1, -0.01], [1, 0.02])
    spread = unit([1, 0], [0, 1], [-1, 0], [0, -1])
    assert uniformity(spread).item() < uniformity(collapsed).item()
    assert uniformity(collapsed).item() == pytest.approx(0.0, abs=2e-3)  # log of e^0
    # Two points at squared distance 2: log e^(-2 * 2).
    assert uniformity(unit([1, 0], [0, 1])).item() == pytest.approx(-4.0, abs=1e-6)


def test_the_loss_weighs_each_term_and_reads_soft_labels_as_their_class() -> None:
    x = unit([1, 0], [0.6, 0.8], [0, 1], [-0.6, 0.8])
    hard, soft = torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([0.1, 0.2, 0.9, 0.8])
    expected = 0.5 * uniformity(x) + 0.1 * alignment(x, hard)
    assert SphereLoss(0.5, 0.1)(x, soft).item() == pytest.approx(expected.item(), abs=1e-6)
    assert SphereLoss(0.0, 0.0)(x, hard).item() == 0.0


@pytest.mark.parametrize("batch_norm", [False, True], ids=["plain", "batch-norm-first"])
def test_a_detector_on_the_unit_sphere_classifies_its_unit_features(batch_norm: bool) -> None:
    torch.manual_seed(0)
    config = {"unit_features": True, "input_size": 128, "feature_batch_norm": batch_norm}
    model = detector_for_run(config).eval()
    assert model.unit_features and model.input_size == 128
    assert model.feature_batch_norm == batch_norm
    x = torch.randn(3, 3, 128, 128)
    with torch.no_grad(), captured_unit_features(model) as seen:
        logits = model(x)
    (features,) = seen
    torch.testing.assert_close(features.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(logits, model.classifier(features).squeeze(1))
    plain = detector_for_run({})
    assert not plain.unit_features and plain.input_size == 224
    own = set(model.state_dict()) - set(plain.state_dict())  # the batch norm's, if any
    assert own == ({"embedding.norm." + k for k in BATCH_NORM_STATE} if batch_norm else set())
    with pytest.raises(ValueError), captured_unit_features(plain):
        pass
    with pytest.raises(ValueError, match="needs unit features"):
        SwapDetector(feature_batch_norm=True)


BATCH_NORM_STATE = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
