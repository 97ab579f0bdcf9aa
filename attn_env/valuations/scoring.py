"""Score texts directly, no bank: relevance r of candidates and alpha of a page.

Example (the shipped MiniLM-L6)::

    from attn_env.valuations import relevance, slot_attention

    relevance(
        "best running shoes for flat feet",
        [
            "Supportive trainers built for fallen arches on long jogs.",
            "Running a small shop? The best card reader for retailers.",
        ],
    )  # array([0.395, 0.367]): the paraphrase above the lexical distractor
    slot_attention("best running shoes", ["ad one", "ad two", "ad three"])
    # array([0.451, 0.216, 0.334]): sums to 1, in page order

Both read the shipped MiniLM-L6 (or ``model_dir``) on ``device`` (``auto``:
CUDA in fp16 when present, else CPU fp32). The model is loaded on first use and
kept for later calls with the same ``model_dir`` and device (pass ``model`` to
manage it yourself). Texts longer than ``max_query_tokens`` /
``max_candidate_tokens`` word pieces are truncated with a warning; empty or
non-string input raises a one-line ``ValueError``. torch and transformers are
imported on the first call, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.errors import UserError

__all__ = ["relevance", "slot_attention"]


@functools.lru_cache(maxsize=2)
def _shared_model(model_dir: str | None, device: str) -> Any:
    """One loaded model per (folder, device), reused across calls."""
    from attn_env.valuations.model import load_model

    return load_model(model_dir, device=device)


def _model(model: Any, model_dir: str | Path | None, device: str) -> Any:
    if model is not None:
        return model
    return _shared_model(None if model_dir is None else str(model_dir), device)


def _check_texts(query: Any, candidates: Any, what: str) -> list[str]:
    """``ValueError`` naming the first bad input; the candidates as a list."""
    if not isinstance(query, str):
        raise UserError(f"query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise UserError("query is empty; expected some text")
    if isinstance(candidates, str) or not isinstance(candidates, list | tuple):
        raise UserError(
            f"{what} must be a list of strings, got {type(candidates).__name__}"
        )
    if not candidates:
        raise UserError(f"{what} is empty; expected at least one text")
    for i, text in enumerate(candidates):
        if not isinstance(text, str):
            raise UserError(f"{what}[{i}] must be a string, got {type(text).__name__}")
        if not text.strip():
            raise UserError(f"{what}[{i}] is empty; expected some text")
    return list(candidates)


def _tokens(lm: Any, texts: list[str], limit: int, what: str) -> list[list[int]]:
    """Word-piece ids of each text, cut to ``limit`` with a warning naming it."""
    from attn_env.valuations.model import tokenize

    if not (isinstance(limit, int) and limit >= 1):
        raise UserError(f"max tokens for {what} must be an integer >= 1, got {limit!r}")
    # a generous cap: only to count how many pieces the truncation drops
    ids = tokenize(lm.tokenizer, texts, 4096)
    for i, row in enumerate(ids):
        if len(row) > limit:
            label = what if len(texts) == 1 else f"{what}[{i}]"
            warnings.warn(
                f"{label} truncated from {len(row)} to {limit} word pieces",
                stacklevel=3,
            )
    return [row[:limit] for row in ids]


def relevance(
    query: str,
    candidates: list[str],
    *,
    model: Any = None,
    model_dir: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 64,
    max_query_tokens: int = 24,
    max_candidate_tokens: int = 40,
    **spec: Any,
) -> NDArray[np.float64]:
    """Relevance r in [0, 1] of each candidate to ``query``, read from attention.

    Each candidate is scored with the query alone (``[CLS] query [SEP] cand
    [SEP]``), so a candidate's r does not depend on the others in the list.

    Args:
        query: the user's request.
        candidates: texts to score (ads, documents, answers).
        model: a loaded :class:`~attn_env.valuations.model.LoadedModel`; default:
            the shipped MiniLM (or ``model_dir``) on ``device``, cached.
        model_dir: a local BERT-like transformers folder.
        device: ``auto``, ``cpu`` or ``cuda[:i]``.
        batch_size: pairs per forward pass.
        max_query_tokens: query truncation, in word pieces (warned).
        max_candidate_tokens: candidate truncation, in word pieces (warned).
        **spec: fields of :class:`~attn_env.valuations.model.AttentionSpec`:
            ``score`` (``lift``, default; ``maxsim`` or ``mass`` with ``layers``,
            ``heads``, ``source``: the earlier definitions) and ``lift_heads``.

    Returns:
        ``float64 [len(candidates)]``, each in [0, 1] (for ``lift``, 0.5 means
        no more attention than a content-free query pays the candidate).
    """
    from attn_env.valuations.lift import pair_relevance
    from attn_env.valuations.model import AttentionSpec

    cands = _check_texts(query, candidates, "candidates")
    attention = AttentionSpec(**spec)
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise UserError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    lm = _model(model, model_dir, device)
    q = _tokens(lm, [query], max_query_tokens, "query")[0]
    c = _tokens(lm, cands, max_candidate_tokens, "candidates")
    return pair_relevance(lm, [q] * len(c), c, attention, batch_size)


def slot_attention(
    query: str,
    candidates: list[str],
    *,
    model: Any = None,
    model_dir: str | Path | None = None,
    device: str = "auto",
    max_query_tokens: int = 24,
    max_candidate_tokens: int = 40,
    **spec: Any,
) -> NDArray[np.float64]:
    """alpha of the page ``[CLS] query [SEP] cand_1 [SEP] ... cand_K [SEP]``.

    Slot j's share of the query tokens' attention to the K slots (the bank's
    alpha, in page order rather than sorted).

    Args:
        query: the user's request.
        candidates: the K texts in slot order.
        model: see :func:`relevance`.
        model_dir: see :func:`relevance`.
        device: see :func:`relevance`.
        max_query_tokens: see :func:`relevance`.
        max_candidate_tokens: see :func:`relevance`.
        **spec: ``layers``, ``heads``, ``source`` of
            :class:`~attn_env.valuations.model.AttentionSpec` (default layer 3,
            max over heads, query rows).

    Returns:
        ``float64 [K]``, non-negative, summing to 1.
    """
    from attn_env.valuations.model import (
        AttentionSpec,
        assemble_pages,
        page_attention,
        segment_mass,
    )

    cands = _check_texts(query, candidates, "candidates")
    attention = AttentionSpec(**spec)
    lm = _model(model, model_dir, device)
    q = _tokens(lm, [query], max_query_tokens, "query")[0]
    c = _tokens(lm, cands, max_candidate_tokens, "candidates")
    page = assemble_pages(lm.tokenizer, [q], [c])
    k = len(c)
    mass = segment_mass(
        page_attention(lm, page, attention), page.segment, k + 1, attention
    )
    slots = mass[0, 1:]
    return slots / slots.sum()
