"""AnyText: the observation and action space of every rdbench env (text, any character).

Gymnasium's Text space holds characters from a fixed charset, and its vector envs' shared
memory stores a text as its characters' indexes in that charset. Tool output can hold any
character, so AnyText's charset is all of Unicode (a character's index is its code point).
Gymnasium reads a Text's shared memory once, into a tuple of strings that never changes;
AnyText's shared memory is read live, so `AsyncVectorEnv` (shared memory on, its default)
returns each step's observations.
"""

from __future__ import annotations

import string
import sys
from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils.shared_memory import read_from_shared_memory

UNICODE_SIZE = sys.maxunicode + 1  # the number of characters; also shared memory's padding


class CodePoints(Sequence[str]):
    """Every Unicode character, in code point order: index i is chr(i).

    AnyText's character list and set: Gymnasium's vector shared memory and `flatten` store a
    Text value as the characters' indexes, so with this list any character round-trips.
    """

    def __len__(self) -> int:
        return UNICODE_SIZE

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return [chr(i) for i in range(*index.indices(len(self)))]
        return chr(int(index))

    def __contains__(self, char: object) -> bool:
        return isinstance(char, str) and len(char) == 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CodePoints)

    def __hash__(self) -> int:
        return hash(CodePoints)


class AnyText(spaces.Text):
    """A Text space that holds any string up to `max_length` characters.

    Gymnasium's Text checks every character against a fixed charset; tool output can hold any
    character, so here the charset is all of Unicode (a character's index is its code point,
    which is how vector envs' shared memory stores it) and membership only bounds the length.
    Samples use printable ASCII.
    """

    def __init__(self, max_length: int, seed: int | None = None):
        super().__init__(max_length=max_length, min_length=0, charset=string.printable, seed=seed)

    @property
    def character_set(self) -> CodePoints:  # type: ignore[override]
        """Every character."""
        return CODE_POINTS

    @property
    def character_list(self) -> CodePoints:  # type: ignore[override]
        """Every character, index i being chr(i)."""
        return CODE_POINTS

    def character_index(self, char: str) -> np.int32:
        """The index of `char`: its code point."""
        return np.int32(ord(char))

    def contains(self, x: Any) -> bool:
        """True for any str of at most `max_length` characters."""
        return isinstance(x, str) and len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A random string of printable ASCII (masks are not supported over all of Unicode)."""
        if mask is not None or probability is not None:
            raise ValueError("AnyText.sample takes no mask or probability")
        length = int(self.np_random.integers(self.min_length, self.max_length + 1))
        return "".join(self.np_random.choice(list(string.printable), size=length))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnyText) and other.max_length == self.max_length

    def __hash__(self) -> int:
        return hash((AnyText, self.max_length))

    def __repr__(self) -> str:
        return f"AnyText(max_length={self.max_length})"


CODE_POINTS = CodePoints()


class SharedTexts(Sequence[str]):
    """The texts of `n` sub-environments in a vector env's shared memory, decoded when read
    (a deep copy is a plain tuple of strings, which is what AsyncVectorEnv hands out)."""

    def __init__(self, space: AnyText, shared_memory: Any, n: int):
        self._rows = np.frombuffer(shared_memory.get_obj(), dtype=np.int32).reshape(
            (n, space.max_length)
        )

    def __len__(self) -> int:
        return int(self._rows.shape[0])

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        row = self._rows[index]
        return "".join(map(chr, row[row < UNICODE_SIZE].tolist()))

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __deepcopy__(self, memo: dict[int, Any]) -> tuple[str, ...]:
        return tuple(self)

    def __repr__(self) -> str:
        return repr(tuple(self))


@read_from_shared_memory.register(AnyText)
def _read_any_text(
    space: AnyText, shared_memory: Any, n: int = 1
) -> SharedTexts:
    """What AsyncVectorEnv reads its observations through: live, not a one-time copy."""
    return SharedTexts(space, shared_memory, n)


__all__ = ["CODE_POINTS", "AnyText", "CodePoints", "SharedTexts"]
