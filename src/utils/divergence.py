"""Divergence check shared by every learner: after each update the loss, the gradient norm and every parameter
must be finite, else the run stops with DivergenceError (run.common turns it into one line and a FAILED record).

A diverged network still acts (argmax over NaN Q-values picks action 0, which may even be the optimum), so a run
that went on would report numbers that mean nothing; stopping at the first update that broke also keeps every
checkpoint finite, since checkpoints are written after the update of their cycle.
"""
import math

import torch
from torch.nn.utils import get_total_norm


class DivergenceError(RuntimeError):
    """A non-finite loss, gradient norm or parameter after an update; the message is one line naming the step."""

    def __init__(self, t_env, message):
        super().__init__(message)
        self.t_env = t_env


def check_finite(t_env, losses, parameters, hint="lower lr or grad_norm_clip"):
    """Raises DivergenceError unless every value of `losses` ({name: tensor or float}, e.g. the loss and the
    gradient norm) and every tensor of `parameters` is finite; `hint` is the likely cause named in the message.

    The check reads the device once per update (one isfinite over the losses and the parameters' total norm): the
    per-value reads for the message happen only when something is not finite."""
    parameters = [p.detach() for p in parameters]
    tensors = [value.detach().double().reshape(1) for value in losses.values() if torch.is_tensor(value)]
    if parameters:
        # one fused norm over all tensors: finite exactly when every parameter is (and none beyond ~1e19, as good
        # as diverged); 4x cheaper than a check per tensor on a MAZero model
        tensors.append(get_total_norm(parameters).double().reshape(1))
    floats_finite = all(math.isfinite(value) for value in losses.values() if not torch.is_tensor(value))
    if floats_finite and (not tensors or bool(torch.isfinite(torch.cat(tensors)).all())):
        return
    values = {name: float(value.detach()) if torch.is_tensor(value) else float(value) for name, value in losses.items()}
    params_finite = bool(torch.isfinite(get_total_norm(parameters))) if parameters else True
    shown = ", ".join(f"{name} {value:g}" for name, value in values.items())
    what = "" if params_finite else "; non-finite parameters"
    raise DivergenceError(t_env, f"diverged at t_env {t_env}: {shown}{what}; {hint}")
