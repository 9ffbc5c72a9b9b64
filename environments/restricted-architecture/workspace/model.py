"""The starting model: a bigram table. It predicts the next token from the current one only.

The grader imports this file and calls `build_model()`, loads `model.pt` into the module it
returns, and calls it on token ids of shape [batch, 128] (int64, values 0..31). It must return
next-token logits of shape [batch, 128, 32]: position t predicts token t + 1 from tokens 0..t.
See instructions.md for what the forward pass may not use.
"""

from __future__ import annotations

import torch
from torch import nn

VOCAB = 32


class Bigram(nn.Module):
    """logits[b, t] = table[tokens[b, t]]: one row of logits per token."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(VOCAB, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [batch, length, VOCAB] for token ids [batch, length]."""
        return self.table(tokens)


def build_model() -> nn.Module:
    """The model the grader evaluates (weights are loaded from model.pt afterwards)."""
    return Bigram()
