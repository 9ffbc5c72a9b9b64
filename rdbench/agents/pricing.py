"""What model tokens cost: a per-model price table, easy to update and to override.

Prices are US dollars per million tokens. To change or add a price without editing this
file, point `RDBENCH_PRICES` (or an agent's `price_file` option) at a TOML or JSON file:

```toml
["claude-sonnet-4-5"]
input = 3.0
output = 15.0
cache_read = 0.30    # optional; default 0.1 x input
cache_write = 3.75   # optional; default 1.25 x input
```

A model id matches a table entry exactly, or after dropping a date or `-latest` suffix
(`claude-sonnet-4-5-20250929` and `gpt-4o-2024-08-06` match `claude-sonnet-4-5` and
`gpt-4o`). A model with no entry (a local model, say) is unpriced: its cost counts as 0.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRICES_ENV = "RDBENCH_PRICES"


@dataclass(frozen=True)
class Price:
    """Dollars per million tokens of one model, by kind of token."""

    input: float
    output: float
    cache_read: float | None = None  # None: 0.1 x input (Anthropic's rate)
    cache_write: float | None = None  # None: 1.25 x input (Anthropic's 5-minute cache)

    def cost(
        self, *, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> float:
        """The dollar cost of these token counts."""
        cache_read = self.input * 0.1 if self.cache_read is None else self.cache_read
        cache_write = self.input * 1.25 if self.cache_write is None else self.cache_write
        return (
            input_tokens * self.input + output_tokens * self.output
            + cache_read_tokens * cache_read + cache_write_tokens * cache_write
        ) / 1_000_000


# Published list prices (checked on the vendors' pricing pages, 2026-11); update them here
# (or override them, see above) when they change.
PRICES: dict[str, Price] = {
    # Anthropic
    "claude-opus-5-5": Price(4.0, 20.0, cache_read=0.2, cache_write=5.0),
    "claude-opus-5": Price(5.0, 25.0),
    "claude-sonnet-5-5": Price(2.0, 10.0, cache_read=0.2, cache_write=2.5),
    "claude-sonnet-5": Price(2.0, 10.0),
    "claude-opus-4-6": Price(5.0, 25.0),
    "claude-sonnet-4-6": Price(3.0, 15.0),
    "claude-opus-4-5": Price(5.0, 25.0),
    "claude-opus-4-1": Price(15.0, 75.0),
    "claude-opus-4": Price(15.0, 75.0),
    "claude-sonnet-4-5": Price(3.0, 15.0),
    "claude-sonnet-4": Price(3.0, 15.0),
    "claude-3-7-sonnet": Price(3.0, 15.0),
    "claude-haiku-4-5": Price(1.0, 5.0),
    "claude-3-5-haiku": Price(0.8, 4.0),
    "claude-3-haiku": Price(0.25, 1.25),
    # OpenAI (cached input is a read; there is no separate cache write)
    "gpt-4o": Price(2.5, 10.0, cache_read=1.25, cache_write=2.5),
    "gpt-4o-mini": Price(0.15, 0.6, cache_read=0.075, cache_write=0.15),
    "gpt-4.1": Price(2.0, 8.0, cache_read=0.5, cache_write=2.0),
    "gpt-4.1-mini": Price(0.4, 1.6, cache_read=0.1, cache_write=0.4),
    "gpt-4.1-nano": Price(0.1, 0.4, cache_read=0.025, cache_write=0.1),
    "gpt-5": Price(1.25, 10.0, cache_read=0.125, cache_write=1.25),
    "gpt-5-mini": Price(0.25, 2.0, cache_read=0.025, cache_write=0.25),
    "gpt-5-nano": Price(0.05, 0.4, cache_read=0.005, cache_write=0.05),
    "o3": Price(2.0, 8.0, cache_read=0.5, cache_write=2.0),
    "o4-mini": Price(1.1, 4.4, cache_read=0.275, cache_write=1.1),
}

_SUFFIX = re.compile(r"(-\d{8}|-\d{4}-\d{2}-\d{2}|-latest)$")


class PriceFileError(ValueError):
    """A price file is malformed; the message says where."""


def load_price_file(path: str | Path) -> dict[str, Price]:
    """Prices from a TOML or JSON file mapping model ids to {input, output, ...}."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
        data: Any = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as error:
        raise PriceFileError(f"{file}: cannot read prices ({error})") from error
    prices = {}
    for model, entry in data.items():
        if not isinstance(entry, dict) or not {"input", "output"} <= set(entry):
            raise PriceFileError(
                f"{file}: the price of {model!r} needs 'input' and 'output' (dollars per "
                f"million tokens), got {entry!r}"
            )
        unknown = set(entry) - {"input", "output", "cache_read", "cache_write"}
        if unknown:
            raise PriceFileError(f"{file}: unknown fields {sorted(unknown)} for {model!r}")
        prices[model] = Price(**{key: float(value) for key, value in entry.items()})
    return prices


def price_table(price_file: str | Path | None = None) -> dict[str, Price]:
    """The built-in prices, overlaid by the `RDBENCH_PRICES` file, then by `price_file`."""
    table = dict(PRICES)
    for path in (os.environ.get(PRICES_ENV), price_file):
        if path:
            table.update(load_price_file(path))
    return table


def find_price(model: str, table: dict[str, Price] | None = None) -> Price | None:
    """The price of `model` (exact id, or without its date suffix), or None if unpriced."""
    table = price_table() if table is None else table
    if model in table:
        return table[model]
    return table.get(_SUFFIX.sub("", model))
