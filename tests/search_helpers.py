"""Small search-day markets for tests, on the shipped default attention bank
(96 queries of the shipped corpus, 16 candidates each): no model call."""

from __future__ import annotations

import functools
import json
from typing import Any

from attn_env.scenarios.search_config import from_data
from attn_env.scenarios.search_market import SearchMarket, build_market
from attn_env.valuations.bank import Bank, load_bank
from attn_env.valuations.cache import shipped_bank_dir
from attn_env.valuations.corpus_io import load_corpus


@functools.cache
def default_bank() -> tuple[Bank, tuple[str, ...], tuple[str, ...]]:
    """The shipped bank of ``BankSettings()`` and the verticals it needs."""
    for folder in sorted(shipped_bank_dir().iterdir()):
        if not (folder / "manifest.json").is_file():
            continue
        manifest = json.loads((folder / "manifest.json").read_text())
        s = manifest["settings"]
        if s["n_queries"] == 96 and s["candidates_per_query"] == 16:
            corpus = load_corpus()
            bank = load_bank(folder)
            q_vert = tuple(corpus.query_verticals[int(i)] for i in bank.queries)
            return bank, tuple(corpus.cand_verticals), q_vert
    raise AssertionError("the default bank is not shipped")


def small_market(**overrides: Any) -> SearchMarket:
    """A search market of 8 advertisers, 4 periods and 3,000 impressions a day,
    with ``overrides`` (nested dicts, as in YAML) on top."""
    data: dict[str, Any] = {
        "traffic": {"impressions": 3000, "periods": 4},
        "advertisers": {"n": 8},
        "auction": {"slots": 3},
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    bank, ads, queries = default_bank()
    return build_market(from_data(data), bank, list(ads), list(queries))
