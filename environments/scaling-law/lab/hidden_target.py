"""The graded target of the scaling-law task: hidden from the agent (it lives only in lab/,
which only the lab sandbox holds). A sum of 256 sinusoids of rising frequency and falling
amplitude, Var f = 1; its seed and shape are the task's secret.

    from hidden_target import make_target     # train.train(width, steps, seed, make_target())
"""

from __future__ import annotations

import math

import torch

D_IN = 8
N_COMPONENTS = 256
HIDDEN = {"seed": 58213, "frequency_scale": 0.6, "decay": 0.9}


class Teacher:
    """The target function: sum_k a_k sin(w_k . x + p_k), with |w_k| = scale k^(1/3) and
    amplitudes a_k ~ 1/k^decay; `seed` draws the directions of w_k and the phases p_k."""

    def __init__(self, seed: int, frequency_scale: float, decay: float) -> None:
        gen = torch.Generator().manual_seed(seed)
        k = torch.arange(1, N_COMPONENTS + 1, dtype=torch.float64)
        directions = torch.randn(N_COMPONENTS, D_IN, generator=gen, dtype=torch.float64)
        directions /= directions.norm(dim=1, keepdim=True)
        self.frequencies = (directions * (frequency_scale * k ** (1 / 3)).unsqueeze(1)).float()
        self.phases = (2 * math.pi * torch.rand(N_COMPONENTS, generator=gen)).float()
        amplitudes = 1.0 / k**decay
        self.amplitudes = (amplitudes / amplitudes.norm() * math.sqrt(2.0)).float()  # Var f = 1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) for a batch of inputs (n, 8) -> (n,)."""
        return torch.sin(torch.addmm(self.phases, x, self.frequencies.t())) @ self.amplitudes


def make_target() -> Teacher:
    """The graded target function."""
    return Teacher(**HIDDEN)
