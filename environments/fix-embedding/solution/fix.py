"""Reference repair of the corrupted embedding: find which corrupted row belongs to which token,
undo its scale, and keep every trained weight.

    python fix.py            # reads model.pt and data/corpus.npy, overwrites model.pt

1. Learn a rough embedding from scratch on the public corpus, with the (intact) MLP frozen.
   It is noisy (the corpus is small) but points each token in the right direction.
2. Match rough rows to corrupted rows by cosine similarity (an optimal one-to-one assignment):
   that undoes the shuffle, since a row's scale does not change its direction.
3. Fit one scale per token (64 numbers, directions kept) on the corpus with the MLP frozen.
The repaired rows are the trained ones (up to 2% noise), far better than anything the small
public corpus could teach from scratch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from model import WindowMLP, windows
from scipy.optimize import linear_sum_assignment

HERE = Path(__file__).resolve().parent
SCALE_EPOCHS = 30
SCALE_LR = 0.01


def frozen_model(state: dict[str, torch.Tensor]) -> WindowMLP:
    """WindowMLP with `state` loaded and every parameter frozen."""
    model = WindowMLP()
    model.load_state_dict(state)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def corpus_loss(model: WindowMLP, embed: torch.Tensor, context: torch.Tensor,
                target: torch.Tensor) -> float:
    """Cross-entropy of the corpus with `embed` as the embedding."""
    with torch.no_grad():
        model.embed.weight.copy_(embed)
        return F.cross_entropy(model(context), target).item()


def fit(model: WindowMLP, make_embed: object, parameters: list[torch.Tensor],
        context: torch.Tensor, target: torch.Tensor, epochs: int, lr: float) -> None:
    """Adam on `parameters` of the embedding function `make_embed`, the MLP frozen."""
    optimizer = torch.optim.Adam(parameters, lr=lr)
    for _ in range(epochs):
        order = torch.randperm(len(target))
        for i in range(0, len(target), 1024):
            batch = order[i : i + 1024]
            x = F.embedding(context[batch], make_embed()).flatten(1)  # type: ignore[operator]
            loss = F.cross_entropy(model.out(torch.relu(model.hidden(x))), target[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def repair(state: dict[str, torch.Tensor], tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """The state with its embedding rows matched back to their tokens and rescaled."""
    torch.manual_seed(0)
    model = frozen_model(state)
    context, target = windows(tokens)
    corrupted = state["embed.weight"]

    rough = (torch.randn_like(corrupted) * 0.1).requires_grad_(True)
    fit(model, lambda: rough, [rough], context, target, epochs=10, lr=0.02)
    rough = rough.detach()
    cosine = F.normalize(rough, dim=1) @ F.normalize(corrupted, dim=1).T
    _, match = linear_sum_assignment(-cosine.numpy())

    rows = corrupted[torch.from_numpy(match)]
    log_scale = torch.log((rough * rows).sum(1).clamp_min(1e-6) / (rows**2).sum(1))
    log_scale.requires_grad_(True)
    fit(model, lambda: rows * log_scale.exp()[:, None], [log_scale], context, target,
        epochs=SCALE_EPOCHS, lr=SCALE_LR)
    embed = (rows * log_scale.detach().exp()[:, None]).contiguous()
    return {**state, "embed.weight": embed}


def main() -> None:
    """Repair model.pt in place."""
    state = torch.load(HERE / "model.pt", map_location="cpu", weights_only=True)
    tokens = torch.from_numpy(np.load(HERE / "data" / "corpus.npy"))
    torch.save(repair(state, tokens), HERE / "model.pt")
    print(f"repaired {HERE / 'model.pt'}")


if __name__ == "__main__":
    main()
