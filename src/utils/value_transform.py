"""Scalar <-> categorical transform of MuZero-family value and reward heads (MuZero's, Schrittwieser et al. 2020, App. F;
docs/mazero.md, "Model").

A scalar x is squashed with h(x) = sign(x)(sqrt(|x|+1) - 1) + eps*x, then written as a "two-hot" distribution over
the integer support [-support_size, support_size]. The network predicts logits over that support; the scalar
prediction is the softmax expectation mapped back through h^-1.
"""
import torch

from config_checks import TWO_HOT_TARGETS  # the `two_hot_target` config key

# eps of h(x) (MuZero appendix F; MAZero core/config.py uses the same value)
SQUASH_EPS = 0.001


def squash(x):
    """h(x) = sign(x)(sqrt(|x|+1) - 1) + eps*x."""
    return torch.sign(x) * (torch.sqrt(torch.abs(x) + 1.0) - 1.0) + SQUASH_EPS * x


def unsquash(y):
    """h^-1(y), the closed-form inverse of `squash`."""
    eps = SQUASH_EPS
    # (sqrt(1 + 4 eps c) - 1) / (2 eps) with c = |y| + 1 + eps, written without the cancellation of the
    # textbook form, which loses ~1e-5 near y = 0 in float32.
    c = torch.abs(y) + 1.0 + eps
    root = 2.0 * c / (torch.sqrt(1.0 + 4.0 * eps * c) + 1.0)
    return torch.sign(y) * (root * root - 1.0)


def scalar_to_two_hot(x, support_size, two_hot_target="exact"):
    """phi(h(x)): target distribution [..., 2*support_size+1] for scalars x [...].

    Values outside the support are clipped to its ends (the head has no bins beyond them). "exact" puts
    1 - (y - floor y) on floor(y) and y - floor(y) on the next bin. "official" is the official MAZero code's _phi: it
    writes the floor bin, then overwrites the ceil bin with y - floor(y), so where y = h(x) is an exact integer
    (x = 0, or a clipped end) floor = ceil gets 0 and the target is the all-zero vector, which adds no cross-entropy
    (docs/mazero.md, "Where we differ from the official code").
    """
    if two_hot_target not in TWO_HOT_TARGETS:
        raise ValueError(f"two_hot_target must be one of {TWO_HOT_TARGETS}, got {two_hot_target!r}")
    y = squash(x.float()).clamp(-support_size, support_size)
    low = torch.floor(y)
    upper_weight = y - low
    low_index = (low + support_size).long()
    target = torch.zeros(*x.shape, 2 * support_size + 1, dtype=torch.float32, device=x.device)
    if two_hot_target == "official":
        high_index = (torch.ceil(y) + support_size).long()
        target.scatter_(-1, low_index.unsqueeze(-1), (1.0 - upper_weight).unsqueeze(-1))
        target.scatter_(-1, high_index.unsqueeze(-1), upper_weight.unsqueeze(-1))
        return target
    high_index = (low_index + 1).clamp(max=2 * support_size)
    target.scatter_add_(-1, low_index.unsqueeze(-1), (1.0 - upper_weight).unsqueeze(-1))
    target.scatter_add_(-1, high_index.unsqueeze(-1), upper_weight.unsqueeze(-1))
    return target


def two_hot_to_scalar(probs, support_size):
    """h^-1(E[support]) for a distribution [..., 2*support_size+1] over the support."""
    support = torch.arange(-support_size, support_size + 1, dtype=probs.dtype, device=probs.device)
    return unsquash((probs * support).sum(-1))


def logits_to_scalar(logits, support_size):
    """Scalar prediction of a categorical head: softmax expectation, then h^-1."""
    return two_hot_to_scalar(torch.softmax(logits, dim=-1), support_size)
