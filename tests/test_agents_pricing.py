"""The price table, its override files, and the retry policy's delays."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdbench.agents.base import Usage
from rdbench.agents.pricing import (
    PRICES,
    Price,
    PriceFileError,
    find_price,
    load_price_file,
    price_table,
)
from rdbench.agents.retry import RetryPolicy, parse_retry_after, with_retries


def test_dated_model_ids_find_their_family_price() -> None:
    assert find_price("claude-sonnet-4-5-20250929") == PRICES["claude-sonnet-4-5"]
    assert find_price("gpt-4o-2024-08-06") == PRICES["gpt-4o"]
    assert find_price("gpt-4o-mini") == PRICES["gpt-4o-mini"]
    assert find_price("llama3.1:8b") is None


def test_cache_prices_default_to_anthropic_multipliers() -> None:
    price = Price(input=2.0, output=10.0)
    cost = price.cost(input_tokens=1_000_000, output_tokens=0, cache_read_tokens=1_000_000,
                      cache_write_tokens=1_000_000)
    assert cost == pytest.approx(2.0 + 0.2 + 2.5)


def test_toml_file_and_env_var_override_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "prices.toml"
    file.write_text('["gpt-4o"]\ninput = 1.0\noutput = 2.0\n\n["my-model"]\ninput = 0.5\n'
                    "output = 0.5\ncache_read = 0.05\n")
    monkeypatch.setenv("RDBENCH_PRICES", str(file))
    table = price_table()
    assert table["gpt-4o"] == Price(1.0, 2.0)
    assert find_price("my-model", table) == Price(0.5, 0.5, cache_read=0.05)


def test_malformed_price_file_says_what_is_missing(tmp_path: Path) -> None:
    file = tmp_path / "prices.json"
    file.write_text('{"m": {"input": 1}}')
    with pytest.raises(PriceFileError, match="needs 'input' and 'output'"):
        load_price_file(file)


def test_retry_after_headers_are_read_in_seconds() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=8.0)
    assert 0.5 <= policy.delay(0, None) <= 1.0
    assert 4.0 <= policy.delay(10, None) <= 8.0
    assert policy.delay(0, 2.5) == 2.5


def test_non_retryable_errors_pass_through_unretried() -> None:
    calls = []

    def request() -> None:
        calls.append(1)
        raise KeyError("not retryable")

    with pytest.raises(KeyError):
        with_retries(request, policy=RetryPolicy(base_delay_s=0.0), retryable=lambda e: False,
                     retry_after=lambda e: None, usage=Usage(), what="test")
    assert len(calls) == 1
