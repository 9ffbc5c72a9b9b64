"""Reference model: a ReLU MLP over the last WINDOW tokens, built from allowed operations only.

Each of the last WINDOW tokens is looked up in its own embedding table (one per offset: the
token just seen, the one before, ...); their sum feeds two ReLU layers. Looking back is done by
padding the token ids on the left (with PAD, a token id of its own), which keeps the model
causal: position t only ever sees tokens t, t-1, ..., t-WINDOW+1. No division, exponentiation,
normalization or softmax anywhere: only lookups, additions, matrix products and ReLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 32
PAD = VOCAB  # id of "before the start of the sequence"
WINDOW = 4
HIDDEN = 256


class WindowMLP(nn.Module):
    """logits[t] = MLP(sum over j < WINDOW of embed_j[tokens[t - j]])."""

    def __init__(self) -> None:
        super().__init__()
        self.embeds = nn.ModuleList(nn.Embedding(VOCAB + 1, HIDDEN) for _ in range(WINDOW))
        self.hidden = nn.Linear(HIDDEN, HIDDEN)
        self.out = nn.Linear(HIDDEN, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [batch, length, VOCAB] for token ids [batch, length]."""
        length = tokens.shape[1]
        padded = F.pad(tokens, (WINDOW - 1, 0), value=PAD)
        x = self.embeds[0](tokens)
        for offset in range(1, WINDOW):
            start = WINDOW - 1 - offset
            x = x + self.embeds[offset](padded[:, start : start + length])
        x = torch.relu(self.hidden(torch.relu(x)))
        return self.out(x)


def build_model() -> nn.Module:
    """The model the grader evaluates (weights are loaded from model.pt afterwards)."""
    return WindowMLP()
