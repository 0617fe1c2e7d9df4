"""utils/value_transform.py: MuZero's squash h(x), its inverse, and the two-hot encoding over the integer support."""
import pytest
import torch

from utils.value_transform import scalar_to_two_hot, squash, two_hot_to_scalar, unsquash


def test_squash_inverse_round_trip():
    x = torch.tensor([-300.0, -20.0, -1.5, -0.01, 0.0, 0.3, 1.0, 7.25, 200.0], dtype=torch.float64)
    assert torch.allclose(unsquash(squash(x)), x, rtol=1e-9, atol=1e-9)
    # h(3) = sqrt(4) - 1 + 0.003
    assert squash(torch.tensor(3.0)).item() == pytest.approx(1.003)


def test_two_hot_round_trip_and_shape():
    x = torch.tensor([[-20.0, -2.5, 0.0], [0.7, 5.0, 20.0]])
    target = scalar_to_two_hot(x, 5)
    assert target.shape == (2, 3, 11)
    assert torch.allclose(target.sum(-1), torch.ones(2, 3))
    assert ((target > 0).sum(-1) <= 2).all()
    assert torch.allclose(two_hot_to_scalar(target, 5), x, atol=1e-4)


def test_two_hot_by_hand_and_clipping():
    # h(3) = 1.003 -> weight 0.997 on bin +1 (index 6), 0.003 on bin +2 (index 7)
    target = scalar_to_two_hot(torch.tensor([3.0]), 5)[0]
    assert target[6].item() == pytest.approx(0.997, abs=1e-6)
    assert target[7].item() == pytest.approx(0.003, abs=1e-6)
    # Far outside the support: all mass on the end bin.
    assert scalar_to_two_hot(torch.tensor([1e6]), 5)[0, 10].item() == pytest.approx(1.0)
    assert scalar_to_two_hot(torch.tensor([-1e6]), 5)[0, 0].item() == pytest.approx(1.0)
