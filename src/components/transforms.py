"""Preprocessing transforms applied by EpisodeBatch.update (EPyMARL semantics)."""
from abc import ABC, abstractmethod

import torch


class Transform(ABC):
    """Maps a stored field to a derived field; `infer_output_info` gives the derived field's scheme entry."""

    @abstractmethod
    def transform(self, tensor):
        """Derived values of `tensor` [..., *vshape_in]."""

    @abstractmethod
    def infer_output_info(self, vshape_in, dtype_in):
        """(vshape_out, dtype_out) of the derived field."""


class OneHot(Transform):
    """Integer indices [..., 1] -> one-hot float vectors [..., out_dim]."""

    def __init__(self, out_dim):
        self.out_dim = out_dim

    def transform(self, tensor):
        onehot = tensor.new_zeros(*tensor.shape[:-1], self.out_dim, dtype=torch.float32)
        return onehot.scatter_(-1, tensor.long(), 1.0)

    def infer_output_info(self, vshape_in, dtype_in):
        return (self.out_dim,), torch.float32
