"""The fixed part of a search-day market: data, advertisers, pages and auction.

Built once from a :class:`SearchDayConfig` (the advertisers are drawn from the
config's seed, so every day of one market has the same advertisers); the days
themselves (traffic, tie-breaks) are drawn by :mod:`attn_env.scenarios.search_state`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from attn_env import mechanisms
from attn_env.errors import ConfigError
from attn_env.scenarios.search_advertisers import Advertisers, draw_advertisers
from attn_env.scenarios.search_auction import SearchAuction
from attn_env.scenarios.search_config import SearchDayConfig
from attn_env.scenarios.search_data import load_search_data
from attn_env.scenarios.search_pages import Pages, read_pages
from attn_env.scenarios.search_traffic import diurnal_shares, zipf_popularity
from attn_env.valuations.bank import Bank
from attn_env.valuations.corpus_io import Corpus

__all__ = ["SearchMarket", "build_market", "default_bank"]


@dataclass
class SearchMarket:
    """Everything a day of this market needs that does not change within it."""

    config: SearchDayConfig
    advertisers: Advertisers
    pages: Pages
    auction: SearchAuction
    popularity: NDArray[np.float64]
    "Zipf popularity of each bank query ``[Q]``."
    shares: NDArray[np.float64]
    "Expected share of the day's traffic in each period ``[T]`` (public)."
    query_vertical: NDArray[np.int64]
    "Vertical index of each bank query ``[Q]``."
    verticals: list[str]

    @property
    def n(self) -> int:
        """Advertisers (agents) N."""
        return self.advertisers.n


def default_bank() -> tuple[Bank, list[str], list[str]]:
    """The shipped search-day bank, its ads' verticals and its queries' verticals."""
    from attn_env.valuations.corpus_io import load_corpus, search_day_corpus_dir
    from attn_env.valuations.shipped_banks import search_day_bank

    corpus = load_corpus(search_day_corpus_dir(), candidates="ads.jsonl")
    bank = search_day_bank()
    q_vert = [corpus.query_verticals[int(i)] for i in bank.queries]
    return bank, list(corpus.cand_verticals), q_vert


def user_bank(corpus: Corpus) -> Bank:
    """The bank of a user's corpus with the search-day settings (built once, on
    the GPU when there is one, then cached)."""
    from attn_env.valuations.bank import build_bank, load_bank
    from attn_env.valuations.shipped_banks import shipped_entry

    _, settings = shipped_entry("search_day")
    return load_bank(build_bank(settings, corpus))


def build_market(
    config: SearchDayConfig,
    bank: Bank | None = None,
    ad_verticals: list[str] | None = None,
    query_verticals: list[str] | None = None,
) -> SearchMarket:
    """The market of ``config``: on the user's ``data`` folder if it names one,
    else on ``bank`` if given, else on the shipped traffic.

    Args:
        config: a checked scenario config.
        bank: an attention bank over the day's queries and ads (default: the
            shipped search-day bank).
        ad_verticals: vertical of every ad (corpus index), with ``bank``.
        query_verticals: vertical of every bank query (row), with ``bank``.
    """
    rng = np.random.default_rng([config.seed, 0x5EA2C4])
    if config.data is not None:
        if bank is not None:
            raise ConfigError("give either config.data or a bank, not both")
        corpus, adv = load_search_data(config.data, rng)
        bank = user_bank(corpus)
        ad_verticals = list(corpus.cand_verticals)
        query_verticals = [corpus.query_verticals[int(i)] for i in bank.queries]
    else:
        if bank is None:
            bank, ad_verticals, query_verticals = default_bank()
        if ad_verticals is None or query_verticals is None:
            raise ConfigError("a bank needs the verticals of its ads and queries")
        adv = draw_advertisers(
            config.advertisers, ad_verticals, config.traffic.impressions, rng
        )
    econ = config.economics
    pbm = econ.pbm if econ.click_model == "pbm" else None
    pages = read_pages(bank, adv.ad_owner, config.auction.slots, econ.relevance, pbm)
    u = config.auction
    mech = mechanisms.make(u.mechanism, reserve=u.reserve, **u.params)
    if mechanisms.family(mech) != "one_sided":
        raise ConfigError(
            f"auction.mechanism must be a one-sided auction (bids for slots), got "
            f"{u.mechanism!r} ({mechanisms.family(mech)})"
        )
    verts = sorted(set(ad_verticals))
    index = {v: i for i, v in enumerate(verts)}
    return SearchMarket(
        config=config,
        advertisers=adv,
        pages=pages,
        auction=SearchAuction(pages, adv, econ, mech, u.slots),
        popularity=zipf_popularity(pages.n_queries, config.traffic.zipf, rng),
        shares=diurnal_shares(config.traffic),
        query_vertical=np.array([index.get(v, -1) for v in query_verticals]),
        verticals=verts,
    )
