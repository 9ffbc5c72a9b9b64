"""The language model of this task: an MLP over the embeddings of the last 3 tokens.

This architecture is fixed: the grader builds its own copy of `WindowMLP()` with exactly these
sizes and loads your model.pt into it.
"""

from __future__ import annotations

import torch
from torch import nn

VOCAB = 64  # tokens are the integers 0..63
CONTEXT = 3  # the model sees the last 3 tokens
DIM = 8  # embedding size
HIDDEN = 64  # hidden units of the MLP


class WindowMLP(nn.Module):
    """Next-token logits from the last CONTEXT tokens: embed, concatenate, ReLU MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.hidden = nn.Linear(CONTEXT * DIM, HIDDEN)
        self.out = nn.Linear(HIDDEN, VOCAB)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        """Logits [N, VOCAB] of the token after each window of token ids [N, CONTEXT]."""
        x = self.embed(window).flatten(1)
        return self.out(torch.relu(self.hidden(x)))


def windows(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (window, next token) pair of sequences [rows, length]: ([N, CONTEXT], [N])."""
    tokens = tokens.long()
    length = tokens.shape[1]
    context = torch.stack([tokens[:, i : length - CONTEXT + i] for i in range(CONTEXT)], dim=2)
    return context.reshape(-1, CONTEXT), tokens[:, CONTEXT:].reshape(-1)
