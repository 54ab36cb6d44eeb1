"""BagMeanLinear: shape, repr, zero start, gradient flow, argument checks."""

from __future__ import annotations

import pytest
import torch

from models import BagMeanLinear


def test_shape_repr_and_zero_start() -> None:
    model = BagMeanLinear(7, 3)
    assert repr(model) == "BagMeanLinear(7, 3)"
    x = torch.randn(5, 7)
    out = model(x)
    assert out.shape == (5, 3)
    assert bool((out == 0).all())  # zero weights: every label starts at probability 0.5
    assert model.weight.shape == (3, 7)


def test_is_a_linear_map_of_the_bag_mean() -> None:
    model = BagMeanLinear(4, 2)
    with torch.no_grad():
        model.linear.weight.copy_(torch.arange(8.0).view(2, 4))
        model.linear.bias.copy_(torch.tensor([1.0, -1.0]))
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    torch.testing.assert_close(model(x), torch.tensor([[0.0 + 3.0 + 1.0, 4.0 + 7.0 - 1.0]]))


def test_gradient_and_reset() -> None:
    model = BagMeanLinear(4, 2)
    model(torch.randn(3, 4)).pow(2).sum().backward()
    model(torch.randn(3, 4)).sum().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())
    with torch.no_grad():
        model.linear.weight.fill_(1.0)
    model.reset_parameters()
    assert bool((model.linear.weight == 0).all()) and bool((model.linear.bias == 0).all())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 3), r"in_dim must be an integer >= 1, got in_dim=0"),
        ((4, 0), r"n_labels must be an integer >= 1, got n_labels=0"),
        ((4.5, 3), r"in_dim must be an integer >= 1, got in_dim=4.5"),
        ((True, 3), r"in_dim must be an integer >= 1, got in_dim=True"),
    ],
)
def test_argument_checks(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BagMeanLinear(*args)


def test_wrong_input_shape() -> None:
    with pytest.raises(ValueError, match=r"bag means of shape \(B, 4\), got \(3, 5\)"):
        BagMeanLinear(4, 2)(torch.zeros(3, 5))
