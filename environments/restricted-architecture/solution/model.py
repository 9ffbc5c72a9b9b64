"""Reference model: a table over the last two tokens plus an induction feature, built from
allowed operations only.

The next token mostly follows a short-range table of the last two tokens (b, c), or repeats what
followed the most recent earlier occurrence of the current token c in the sequence. The model
finds that earlier occurrence without attention or softmax: it compares every position with
every earlier one (`==`, a strictly lower-triangular mask), weights the matches by their
position so that the latest has the largest weight, keeps the match equal to the maximum, and
reads the token after it with a matrix product of one-hot vectors. Then

    logits[t] = base[b, c] + onehot(copied token) * bonus[b, c]

with `base` the log-probabilities of the table and `bonus` how much copying raises the copied
token's log-probability; both are plain tables (embeddings), computed by train.py.
"""

from __future__ import annotations

import torch
from torch import nn

VOCAB = 32
PAD = VOCAB  # id of "before the start of the sequence"
CONTEXTS = (VOCAB + 1) * VOCAB  # (b, c) pairs, b possibly PAD: row b * VOCAB + c


class InductionTable(nn.Module):
    """logits[t] = base[x_{t-1}, x_t] + onehot(x_{s+1}) * bonus[x_{t-1}, x_t], with s < t the
    last earlier position where x_s = x_t (no bonus if there is none)."""

    def __init__(self) -> None:
        super().__init__()
        self.base = nn.Embedding(CONTEXTS, VOCAB)
        self.bonus = nn.Embedding(CONTEXTS, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [batch, length, VOCAB] for token ids [batch, length]."""
        length = tokens.shape[1]
        previous = torch.cat([torch.full_like(tokens[:, :1], PAD), tokens[:, :-1]], dim=1)
        context = previous * VOCAB + tokens
        return self.base(context) + copied(tokens, length) * self.bonus(context)


def copied(tokens: torch.Tensor, length: int) -> torch.Tensor:
    """[batch, length, VOCAB]: one-hot of the token that followed the last earlier occurrence
    of tokens[:, t] (at positions s < t), zeros where tokens[:, t] did not occur before."""
    same = tokens[:, :, None] == tokens[:, None, :]  # [batch, t, s]
    order = torch.arange(1, length + 1, dtype=torch.float32)  # later positions weigh more
    earlier = (torch.ones(length, length) * order).tril(-1)  # zero unless s < t
    weight = torch.where(same, earlier, 0.0)
    latest = weight.amax(dim=2, keepdim=True)  # 0 where there is no earlier occurrence
    pick = torch.where(weight == latest, weight, 0.0).clamp(max=1.0)  # one-hot of s, or 0
    onehot = torch.where(tokens[:, :, None] == torch.arange(VOCAB), 1.0, 0.0)
    following = torch.cat([onehot[:, 1:], torch.zeros_like(onehot[:, :1])], dim=1)  # s -> s + 1
    return torch.bmm(pick, following)


def build_model() -> nn.Module:
    """The model the grader evaluates (weights are loaded from model.pt afterwards)."""
    return InductionTable()
