"""Demand and supply of attention compute: inference requests and GPU providers.

**Requests (buyers' steps).** A request asks the shipped MiniLM-L6 encoder to
read a query of the shipped corpus with ``K`` retrieved passages of the same
vertical, one sequence ``[CLS] query [SEP] doc_1 [SEP] ... doc_K [SEP]``.
Its length ``L`` is counted by the model's own tokenizer (WordPiece, no
padding) and cut at the model's 512 positions. A *job* is a batch of
``batch`` such requests of one kind, one step of a buyer's demand schedule.

**FLOP model** (one forward pass, 2 FLOPs per multiply-add, per layer; MiniLM:
``d = 384``, ``d_ff = 1536``, 6 layers, read from the model's config.json)::

    Q, K, V, O projections   8 L d^2
    scores Q K^T and A V     4 L^2 d      (the term quadratic in L)
    feed-forward             4 L d d_ff   (= 16 L d^2 for d_ff = 4 d)

``flops(L) = layers * (8 L d^2 + 4 L^2 d + 4 L d d_ff)``. The attention block
is the first two lines; its quadratic term is what makes a long context cost
more per token. Embeddings, layer norms and softmax are left out (under 1 %).

**Distributions** (all drawn from one ``numpy.random.Generator``):

========================  =====================================================
quantity                  distribution
========================  =====================================================
query                     uniform over the corpus's queries (a run draws a
                          pool of ``pool_size`` requests; jobs resample it)
``K`` passages            uniform integer in ``[docs_min, docs_max]``, each
                          passage uniform over the query's vertical
``batch``                 uniform integer in ``[1, batch_max]`` requests
value per request         LogNormal(log ``value_median``, ``value_sigma``)
deadline                  uniform integer in ``[1, deadline_max]`` periods
job's step price          value per request / GFLOP per request
seller's base cost        LogNormal(log ``cost_median``, ``cost_sigma``) per
                          GFLOP
tranche ``t`` of ``T``    cost ``base * (1 + cost_slope * t / (T - 1))``: a
                          rising marginal cost
capacity                  ``capacity_ratio`` x the mean demand per period / m,
                          times Uniform(0.5, 1.5), split evenly over tranches
========================  =====================================================

Quantities are GFLOP (1e9 FLOPs); prices are value units per GFLOP.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FlopModel",
    "Jobs",
    "RequestPool",
    "TokenCounts",
    "draw_jobs",
    "draw_requests",
    "draw_sellers",
    "flop_model",
    "token_counts",
]


@dataclass(frozen=True)
class FlopModel:
    """Shape of the encoder, for its FLOPs per sequence."""

    d_model: int
    d_ff: int
    n_layers: int
    max_len: int

    def flops(self, length: NDArray[np.float64]) -> NDArray[np.float64]:
        """FLOPs of one forward pass over sequences of ``length`` tokens."""
        d, L = float(self.d_model), np.asarray(length, dtype=np.float64)
        per_layer = 8 * L * d * d + 4 * L * L * d + 4 * L * d * self.d_ff
        return self.n_layers * per_layer

    def attention_flops(self, length: NDArray[np.float64]) -> NDArray[np.float64]:
        """FLOPs of the attention blocks alone (projections and scores)."""
        d, L = float(self.d_model), np.asarray(length, dtype=np.float64)
        return self.n_layers * (8 * L * d * d + 4 * L * L * d)

    def formula(self) -> str:
        """The FLOP model in words, for results and docs."""
        return (
            f"{self.n_layers} x (8 L d^2 + 4 L^2 d + 4 L d d_ff), d = {self.d_model}, "
            f"d_ff = {self.d_ff}, L <= {self.max_len}"
        )


@dataclass(frozen=True)
class TokenCounts:
    """Token counts of the shipped corpus (special tokens not counted).

    Attributes:
        query: ``int64 [Q]`` tokens of each query.
        query_vertical: ``int64 [Q]`` its vertical's index.
        cand: ``int64 [C]`` tokens of each passage, passages grouped by vertical.
        start: ``int64 [V]`` first passage of each vertical in ``cand``.
        count: ``int64 [V]`` passages of each vertical.
    """

    query: NDArray[np.int64]
    query_vertical: NDArray[np.int64]
    cand: NDArray[np.int64]
    start: NDArray[np.int64]
    count: NDArray[np.int64]


@functools.cache
def flop_model() -> FlopModel:
    """The FLOP model of the shipped MiniLM (its config.json; no torch)."""
    from attn_env.valuations.model import default_model_dir

    cfg = json.loads((Path(default_model_dir()) / "config.json").read_text())
    return FlopModel(
        d_model=int(cfg["hidden_size"]),
        d_ff=int(cfg["intermediate_size"]),
        n_layers=int(cfg["num_hidden_layers"]),
        max_len=int(cfg["max_position_embeddings"]),
    )


@functools.cache
def token_counts() -> TokenCounts:
    """Tokenise the shipped corpus once per process with MiniLM's tokenizer.

    ``tokenizers`` (a dependency of transformers, without torch) reads the
    model folder's tokenizer.json; about 0.3 s for the 3,320 texts.
    """
    from tokenizers import Tokenizer

    from attn_env.valuations.corpus_io import load_corpus
    from attn_env.valuations.model import default_model_dir

    tok = Tokenizer.from_file(str(Path(default_model_dir()) / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    corpus = load_corpus()

    def count(texts: list[str]) -> NDArray[np.int64]:
        enc = tok.encode_batch(texts, add_special_tokens=False)
        return np.array([len(e.ids) for e in enc], dtype=np.int64)

    verticals = sorted(set(corpus.query_verticals) | set(corpus.cand_verticals))
    index = {v: i for i, v in enumerate(verticals)}
    cand_v = np.array([index[v] for v in corpus.cand_verticals])
    order = np.argsort(cand_v, kind="stable")
    cand = count(corpus.cand_texts)[order]
    count_v = np.bincount(cand_v, minlength=len(verticals))
    return TokenCounts(
        query=count(corpus.query_texts),
        query_vertical=np.array([index[v] for v in corpus.query_verticals]),
        cand=cand,
        start=np.concatenate([[0], np.cumsum(count_v)[:-1]]),
        count=count_v,
    )


@dataclass(frozen=True)
class Jobs:
    """Jobs of shape ``[...]``: one step of a buyer's schedule each."""

    tokens: NDArray[np.float64]
    "sequence length L of each request of the job"
    gflop: NDArray[np.float64]
    "GFLOP of the whole job (batch x flops(L) / 1e9)"
    value: NDArray[np.float64]
    "value of the whole job (batch x value per request)"
    deadline: NDArray[np.int64]
    "periods the job may wait, >= 1"

    @property
    def price(self) -> NDArray[np.float64]:
        """Value per GFLOP: the job's step price when reported truthfully."""
        return self.value / self.gflop


@dataclass(frozen=True)
class RequestPool:
    """Requests drawn from the corpus once per run, resampled by every job.

    Tokenising is done once (:func:`token_counts`); drawing ``K`` passages per
    request is the slow part, so a run draws a pool of requests up front and
    jobs sample it with replacement (a bootstrap of the request distribution).
    """

    tokens: NDArray[np.float64]
    "sequence length L of each request"
    gflop: NDArray[np.float64]
    "GFLOP of one forward pass over it"


def draw_requests(
    rng: np.random.Generator, size: int, *, docs_min: int, docs_max: int
) -> RequestPool:
    """``size`` requests: a query and ``K`` passages of its vertical each."""
    tc, fm = token_counts(), flop_model()
    q = rng.integers(0, tc.query.size, size)
    vert = tc.query_vertical[q]
    k = rng.integers(docs_min, docs_max + 1, size)
    pick = tc.start[vert][:, None] + (
        rng.random((size, docs_max)) * tc.count[vert][:, None]
    ).astype(np.int64)
    used = np.arange(docs_max) < k[:, None]
    doc_tokens = np.where(used, tc.cand[pick] + 1, 0).sum(axis=-1)  # + [SEP]
    length = np.minimum(2 + tc.query[q] + doc_tokens, fm.max_len).astype(np.float64)
    return RequestPool(tokens=length, gflop=fm.flops(length) / 1e9)


def draw_jobs(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    pool: RequestPool,
    *,
    batch_max: int,
    value_median: float,
    value_sigma: float,
    deadline_max: int,
) -> Jobs:
    """Draw jobs of the given shape (distributions: module docstring); each
    job's request is resampled from ``pool``."""
    pick = rng.integers(0, pool.tokens.size, shape)
    batch = rng.integers(1, batch_max + 1, shape)
    per_request = rng.lognormal(np.log(value_median), value_sigma, shape)
    return Jobs(
        tokens=pool.tokens[pick],
        gflop=batch * pool.gflop[pick],
        value=batch * per_request,
        deadline=rng.integers(1, deadline_max + 1, shape),
    )


def draw_sellers(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    n_steps: int,
    *,
    mean_demand: float,
    cost_median: float,
    cost_sigma: float,
    cost_slope: float,
    capacity_ratio: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Supply schedules ``(ask_prices, ask_quantities)``, each ``[*shape, T]``.

    ``shape`` ends with the sellers' axis ``m``; ``mean_demand`` is the mean
    GFLOP demanded per market and period.
    """
    base = rng.lognormal(np.log(cost_median), cost_sigma, shape)
    ramp = 1.0 + cost_slope * np.arange(n_steps) / max(n_steps - 1, 1)
    capacity = capacity_ratio * mean_demand / shape[-1] * rng.uniform(0.5, 1.5, shape)
    prices = base[..., None] * ramp
    quantities = np.repeat((capacity / n_steps)[..., None], n_steps, axis=-1)
    return prices, quantities
