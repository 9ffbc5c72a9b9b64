"""The policy format: a feed-forward network in a JSON file, read, checked and played by the
grader.

    {"layers": [
        {"weights": [[...], ...], "bias": [...], "activation": "tanh"},
        ...
        {"weights": [[...], ...], "bias": [...], "activation": "linear"}
    ]}

A layer maps its input x (n numbers) to activation(x @ weights + bias): `weights` has n rows
of m numbers, `bias` m numbers, `activation` is "tanh", "relu" or "linear". The first layer
takes the observation as Acrobot-v1 gives it, [cos t1, sin t1, cos t2, sin t2, dt1, dt2]
(n = 6, no scaling: fold any into the first layer's weights); the last gives three scores, one
per action (torque -1, 0, +1), and the action is the one with the highest score (the lowest
action of a tie). At most MAX_LAYERS layers and MAX_NUMBERS numbers in all, every one finite.

The grader plays the episodes with `play`: all of them side by side, the actions computed here,
in float64, for all the episodes still running at once. No code of the agent runs during
grading, so nothing can look ahead, keep memory between steps or recognise an episode. The
workspace's network.py is this file (a test keeps them the same), so evaluate.py plays exactly
what the grader will, on other seeds.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

ENV_ID = "Acrobot-v1"
OBSERVATION_SIZE = 6
ACTIONS = 3
MAX_LAYERS = 8
MAX_NUMBERS = 1_000_000
MAX_FILE_BYTES = 32 * 1024 * 1024
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "linear": lambda x: x,
}


class NetworkError(ValueError):
    """The policy file is missing, malformed or outside the limits; the message says how."""


@dataclass(frozen=True)
class Layer:
    """One layer: activation(x @ weights + bias)."""

    weights: np.ndarray  # (inputs, outputs)
    bias: np.ndarray  # (outputs,)
    activation: str


class Network:
    """A checked policy network."""

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = layers

    def scores(self, observations: np.ndarray) -> np.ndarray:
        """The (k, 3) action scores of a (k, 6) array of observations."""
        x = np.asarray(observations, dtype=np.float64)
        for layer in self.layers:
            x = ACTIVATIONS[layer.activation](x @ layer.weights + layer.bias)
        return x

    def actions(self, observations: np.ndarray) -> np.ndarray:
        """The action (0, 1 or 2) for each row of a (k, 6) array of observations."""
        return self.scores(observations).argmax(axis=1)

    def size(self) -> int:
        """How many numbers the network has."""
        return sum(layer.weights.size + layer.bias.size for layer in self.layers)


def play(network: Network, seeds: list[int]) -> list[float]:
    """The return of one episode of Acrobot-v1 per seed, the episodes run side by side."""
    envs = [gym.make(ENV_ID) for _ in seeds]
    observations = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds, strict=True)]
    returns = [0.0] * len(seeds)
    running = list(range(len(seeds)))
    while running:
        actions = network.actions(np.array([observations[i] for i in running]))
        still_running = []
        for index, action in zip(running, actions, strict=True):
            observations[index], reward, terminated, truncated, _ = envs[index].step(int(action))
            returns[index] += float(reward)
            if not (terminated or truncated):
                still_running.append(index)
        running = still_running
    return returns


def load_network(path: str | os.PathLike[str]) -> Network:
    """Read and check the policy file at `path`; NetworkError says what is wrong."""
    name = os.path.basename(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise NetworkError(f"{name} could not be read ({error.strerror})") from None
    return network_from_bytes(data, name)


def network_from_bytes(data: bytes, name: str = "policy.json") -> Network:
    """The network in a policy file's bytes; NetworkError says what is wrong."""
    if len(data) > MAX_FILE_BYTES:
        raise NetworkError(f"{name} is larger than {MAX_FILE_BYTES} bytes, the limit")
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise NetworkError(f"{name} is not valid JSON: {str(error)[:200]}") from None
    return parse_network(document, name)


def parse_network(document: object, name: str = "policy.json") -> Network:
    """The network a parsed policy file describes; NetworkError says what is wrong."""
    if not isinstance(document, dict) or not isinstance(document.get("layers"), list):
        raise NetworkError(f'{name} must be an object with a "layers" list')
    raw_layers = document["layers"]
    if not 1 <= len(raw_layers) <= MAX_LAYERS:
        raise NetworkError(f"{name} has {len(raw_layers)} layers; 1 to {MAX_LAYERS} are allowed")
    layers, inputs, numbers = [], OBSERVATION_SIZE, 0
    for index, raw in enumerate(raw_layers, start=1):
        where = f"{name}, layer {index}"
        if not isinstance(raw, dict):
            raise NetworkError(f"{where}: must be an object with weights, bias and activation")
        activation = raw.get("activation")
        if activation not in ACTIVATIONS:
            raise NetworkError(
                f"{where}: activation {str(activation)[:40]!r} is not one of {sorted(ACTIVATIONS)}"
            )
        weights = _matrix(raw.get("weights"), f"{where}: weights")
        if weights.shape[0] != inputs:
            raise NetworkError(
                f"{where}: weights has {weights.shape[0]} rows; it needs {inputs} (one per input)"
            )
        bias = _vector(raw.get("bias"), f"{where}: bias")
        if bias.shape[0] != weights.shape[1]:
            raise NetworkError(
                f"{where}: bias has {bias.shape[0]} numbers; it needs {weights.shape[1]} (one "
                "per column of weights)"
            )
        numbers += weights.size + bias.size
        if numbers > MAX_NUMBERS:
            raise NetworkError(f"{name} has over {MAX_NUMBERS} numbers; that is the limit")
        layers.append(Layer(weights, bias, activation))
        inputs = weights.shape[1]
    if inputs != ACTIONS:
        raise NetworkError(f"{name}: the last layer gives {inputs} scores; it must give {ACTIONS}")
    return Network(layers)


def _vector(value: object, where: str) -> np.ndarray:
    if not isinstance(value, list) or not value:
        raise NetworkError(f"{where} must be a non-empty list of numbers")
    return _finite(value, where, dimensions=1)


def _matrix(value: object, where: str) -> np.ndarray:
    if not isinstance(value, list) or not value or not isinstance(value[0], list) or not value[0]:
        raise NetworkError(f"{where} must be a non-empty list of rows (non-empty lists of numbers)")
    if any(not isinstance(row, list) or len(row) != len(value[0]) for row in value):
        raise NetworkError(f"{where}: every row must be a list of the same length")
    return _finite(value, where, dimensions=2)


def _finite(value: list, where: str, dimensions: int) -> np.ndarray:
    flat = value if dimensions == 1 else [x for row in value for x in row]
    if not flat or any(isinstance(x, bool) or not isinstance(x, int | float) for x in flat):
        raise NetworkError(f"{where}: every entry must be a number")
    try:
        if all(math.isfinite(x) for x in flat):
            return np.array(value, dtype=np.float64)
    except OverflowError:  # an integer too large for a float
        pass
    raise NetworkError(f"{where}: every number must be a finite float (no NaN, no infinity)")
