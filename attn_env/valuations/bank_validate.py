"""Validation of a loaded bank: does r pick the query's own vertical?

A bank's r is only useful if it tracks relevance. This module measures that on
the bank's own candidate sets, against the obvious baseline (cosine of
mean-pooled embeddings), for ``attn-market valuations validate``. It needs the
model, which is imported when the check runs, never at import time.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from attn_env.errors import UserError

if TYPE_CHECKING:
    from attn_env.valuations.bank import Bank
    from attn_env.valuations.corpus_io import Corpus

__all__ = ["check_finite", "validate_bank"]

#: the float arrays of a bank, which must hold no NaN or inf.
FLOAT_ARRAYS = ("relevance_raw", "alpha")


def check_finite(bank: Bank) -> None:
    """``ValueError`` naming the array (and its file) if a float array of ``bank``
    holds a NaN or an infinity (a corrupt or hand-edited bank)."""
    for name in FLOAT_ARRAYS:
        arr = np.asarray(getattr(bank, name))
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise UserError(
                f"bank {str(bank.path)!r}: {name} ({name}.npy) holds "
                f"{int(bad.sum())} non-finite value(s), first {arr[idx]} at index "
                f"{idx}; rebuild the bank"
            )


def validate_bank(
    bank: Bank, corpus: Corpus, lm: Any, progress: bool = False
) -> dict[str, Any]:
    """Precision@1 at picking an own-vertical candidate: r vs a cosine baseline.

    For every query of the bank, the top candidate of its set by ``r_raw`` (any
    monotone map of it has the same argmax) and by the cosine of mean-pooled
    embeddings (query and candidate encoded separately) count as a hit when the
    candidate is of the query's vertical.

    Args:
        bank: a loaded bank.
        corpus: the corpus the bank was built from.
        lm: a :class:`~attn_env.valuations.model.LoadedModel` for the baseline.
        progress: a tqdm bar on stderr over the texts embedded for the
            baseline (the slow part), shown when stderr is a terminal.

    Returns:
        ``queries``, ``candidates_per_query``, ``own_share`` (the hit rate of a
        random pick) and ``precision_at_1_r`` / ``precision_at_1_cosine``.

    Raises:
        ValueError: ``relevance_raw`` or ``alpha`` holds a NaN or an infinity
            (:func:`check_finite`).
    """
    check_finite(bank)
    from tqdm.auto import tqdm

    queries = np.asarray(bank.queries)
    cands = np.asarray(bank.candidates)
    own = np.asarray(bank.own)
    rows = np.arange(len(queries))
    top_r = np.argmax(np.asarray(bank.relevance_raw), axis=1)
    uniq = np.unique(cands)
    with tqdm(
        total=len(uniq) + len(queries),
        desc="cosine baseline: embedding",
        unit="text",
        disable=None if progress else True,
        file=sys.stderr,
    ) as bar:
        emb_c = _embed(lm, [corpus.cand_texts[j] for j in uniq], bar)
        emb_q = _embed(lm, [corpus.query_texts[q] for q in queries], bar)
    pos = np.searchsorted(uniq, cands)
    cosine = np.einsum("qcd,qd->qc", emb_c[pos], emb_q)
    top_cos = np.argmax(cosine, axis=1)
    return {
        "queries": len(queries),
        "candidates_per_query": int(cands.shape[1]),
        "own_share": float(own.mean()),
        "precision_at_1_r": float(own[rows, top_r].mean()),
        "precision_at_1_cosine": float(own[rows, top_cos].mean()),
    }


def _embed(lm: Any, texts: list[str], bar: Any, batch_size: int = 128) -> np.ndarray:
    """``embed_texts`` batch by batch, ticking ``bar`` (same batches: same numbers)."""
    from attn_env.valuations.model import embed_texts

    parts = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        parts.append(embed_texts(lm, chunk, batch_size=batch_size))
        bar.update(len(chunk))
    return np.concatenate(parts)
