"""Train the reference policy's network (6 -> 16 -> 3) by the cross-entropy method (CEM).

    python train.py                  # 10-20 minutes on 2 cores; writes policy.json
    python train.py --generations 20 # a quick, weaker run

The network reaches about -74 on held-out starts (-73.1 on the grader's test seeds). It is
saved in the grader's format (network.py): a tanh layer of 16 units, the features' scaling
folded into its weights, then a linear layer.

Episodes run in a vectorized numpy copy of Acrobot-v1's dynamics (the book equations, RK4
with dt = 0.2, the same wrapping and velocity bounds as gymnasium), thousands at once: every
candidate network of a generation plays the same batch of random starting states. The mean
of the best eighth of the candidates becomes the next generation's centre; every ten
generations the centre is scored on 200 fixed held-out starts, and the best centre so far is
what gets saved. The result is then checked on gymnasium's own environment.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

HIDDEN = 16
INPUTS = 7  # policy.features(): 6 observation values and a constant 1
DT = 0.2
MAX_STEPS = 500
OUT = Path(__file__).resolve().parent / "policy.json"
SCALE = np.array([1.0, 1.0, 1.0, 1.0, 4.0, 9.0])  # features(): velocities to about [-1, 1]


def derivatives(s: np.ndarray, torque: np.ndarray) -> np.ndarray:
    """d/dt of the states s (n, 4): Acrobot's book dynamics, unit masses and lengths."""
    t1, t2, v1, v2 = s[:, 0], s[:, 1], s[:, 2], s[:, 3]
    d1 = 0.25 + (1.0 + 0.25 + np.cos(t2)) + 2.0
    d2 = (0.25 + 0.5 * np.cos(t2)) + 1.0
    phi2 = 0.5 * 9.8 * np.cos(t1 + t2 - math.pi / 2)
    phi1 = (
        -0.5 * v2**2 * np.sin(t2)
        - 2 * 0.5 * v2 * v1 * np.sin(t2)
        + 1.5 * 9.8 * np.cos(t1 - math.pi / 2)
        + phi2
    )
    a2 = (torque + d2 / d1 * phi1 - 0.5 * v1**2 * np.sin(t2) - phi2) / (0.25 + 1.0 - d2**2 / d1)
    a1 = -(d2 * a2 + phi1) / d1
    return np.stack([v1, v2, a1, a2], axis=1)


def step(s: np.ndarray, torque: np.ndarray) -> np.ndarray:
    """One RK4 step of length DT, angles wrapped to [-pi, pi), velocities bounded."""
    k1 = derivatives(s, torque)
    k2 = derivatives(s + DT / 2 * k1, torque)
    k3 = derivatives(s + DT / 2 * k2, torque)
    k4 = derivatives(s + DT * k3, torque)
    s = s + DT / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    s[:, :2] = (s[:, :2] + math.pi) % (2 * math.pi) - math.pi
    s[:, 2] = np.clip(s[:, 2], -4 * math.pi, 4 * math.pi)
    s[:, 3] = np.clip(s[:, 3], -9 * math.pi, 9 * math.pi)
    return s


def features(s: np.ndarray) -> np.ndarray:
    """policy.features() of the float32 observations of states s."""
    obs = np.stack(
        [np.cos(s[:, 0]), np.sin(s[:, 0]), np.cos(s[:, 1]), np.sin(s[:, 1]), s[:, 2], s[:, 3]],
        axis=1,
    ).astype(np.float32).astype(np.float64)
    obs[:, 4] /= 4.0
    obs[:, 5] /= 9.0
    return np.concatenate([obs, np.ones((len(s), 1))], axis=1)


def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parameter vectors (p, d) -> hidden (p, 7, 16) and output (p, 17, 3) matrices."""
    cut = INPUTS * HIDDEN
    return (
        theta[:, :cut].reshape(len(theta), INPUTS, HIDDEN),
        theta[:, cut:].reshape(len(theta), HIDDEN + 1, 3),
    )


def mean_returns(theta: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The mean return of each candidate network over the same starting states."""
    hidden, output = unpack(theta)
    p, n = len(theta), len(starts)
    s = np.tile(starts, (p, 1))
    owner = np.repeat(np.arange(p), n)
    steps = np.zeros(p * n)
    active = np.arange(p * n)  # episodes still running
    for _ in range(MAX_STEPS):
        x = features(s[active])
        who = owner[active]
        h = np.tanh(np.einsum("ni,nih->nh", x, hidden[who]))
        scores = np.einsum("nh,nhk->nk", h, output[who, :HIDDEN]) + output[who, HIDDEN]
        s[active] = step(s[active], scores.argmax(axis=1) - 1.0)
        steps[active] += 1
        done = -np.cos(s[active, 0]) - np.cos(s[active, 0] + s[active, 1]) > 1.0
        steps[active[done]] -= 1  # the step that reaches the goal is rewarded 0, not -1
        active = active[~done]
        if not len(active):
            break
    return -steps.reshape(p, n).mean(axis=1)


def check_with_gymnasium(seeds: range) -> float:
    """The mean return of the saved policy.json, played by network.py in gymnasium."""
    from network import load_network, play

    return float(np.mean(play(load_network(OUT), list(seeds))))


def save(theta: np.ndarray) -> None:
    """Write policy.json: the network in the grader's format, scaling and biases folded in."""
    hidden, output = unpack(np.round(theta, 6)[None])
    layers = [
        {"weights": (hidden[0, :6] / SCALE[:, None]).tolist(), "bias": hidden[0, 6].tolist(),
         "activation": "tanh"},
        {"weights": output[0, :HIDDEN].tolist(), "bias": output[0, HIDDEN].tolist(),
         "activation": "linear"},
    ]  # fmt: skip
    text = json.dumps({"layers": layers}, indent=1)
    OUT.write_text(text + "\n", encoding="utf-8")


def main() -> None:
    """Run CEM, save the best centre, check it in gymnasium."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=150)
    parser.add_argument("--population", type=int, default=96)
    parser.add_argument("--episodes", type=int, default=48)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    held_out = np.random.default_rng(12345).uniform(-0.1, 0.1, (200, 4))
    size = INPUTS * HIDDEN + (HIDDEN + 1) * 3
    centre, spread = np.zeros(size), np.full(size, 0.5)
    elite_count = args.population // 8
    best_score, best = -math.inf, centre
    started = time.perf_counter()
    for generation in range(1, args.generations + 1):
        starts = rng.uniform(-0.1, 0.1, (args.episodes, 4))  # as gymnasium's reset draws them
        candidates = centre + spread * rng.standard_normal((args.population, size))
        candidates[0] = centre
        returns = mean_returns(candidates, starts)
        elite = candidates[np.argsort(-returns)[:elite_count]]
        centre = elite.mean(axis=0)
        spread = 0.8 * spread + 0.2 * (elite.std(axis=0) + 0.005)
        if generation % 10 == 0 or generation == args.generations:
            score = float(mean_returns(centre[None], held_out)[0])
            if score > best_score:
                best_score, best = score, centre.copy()
            elapsed = time.perf_counter() - started
            print(f"generation {generation}: best candidate {returns.max():.1f}, "
                  f"centre on held-out starts {score:.2f} ({elapsed:.0f}s)", flush=True)
    save(best)
    print(f"saved {OUT} (held-out mean return {best_score:.2f})")
    print(f"gymnasium, seeds 0-99: mean return {check_with_gymnasium(range(100)):.2f}")


if __name__ == "__main__":
    main()
