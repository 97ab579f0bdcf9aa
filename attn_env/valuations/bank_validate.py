"""Validation of a loaded bank: does r pick the query's own vertical?

A bank's r is only useful if it tracks relevance. This module measures that on
the bank's own candidate sets, against the obvious baseline (cosine of
mean-pooled embeddings), for ``attn-market valuations validate``. It needs the
model, which is imported when the check runs, never at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

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
            raise ValueError(
                f"bank {str(bank.path)!r}: {name} ({name}.npy) holds "
                f"{int(bad.sum())} non-finite value(s), first {arr[idx]} at index "
                f"{idx}; rebuild the bank"
            )


def validate_bank(bank: Bank, corpus: Corpus, lm: Any) -> dict[str, Any]:
    """Precision@1 at picking an own-vertical candidate: r vs a cosine baseline.

    For every query of the bank, the top candidate of its set by ``r_raw`` (any
    monotone map of it has the same argmax) and by the cosine of mean-pooled
    embeddings (query and candidate encoded separately) count as a hit when the
    candidate is of the query's vertical.

    Args:
        bank: a loaded bank.
        corpus: the corpus the bank was built from.
        lm: a :class:`~attn_env.valuations.model.LoadedModel` for the baseline.

    Returns:
        ``queries``, ``candidates_per_query``, ``own_share`` (the hit rate of a
        random pick) and ``precision_at_1_r`` / ``precision_at_1_cosine``.

    Raises:
        ValueError: ``relevance_raw`` or ``alpha`` holds a NaN or an infinity
            (:func:`check_finite`).
    """
    check_finite(bank)
    from attn_env.valuations.model import embed_texts

    queries = np.asarray(bank.queries)
    cands = np.asarray(bank.candidates)
    own = np.asarray(bank.own)
    rows = np.arange(len(queries))
    top_r = np.argmax(np.asarray(bank.relevance_raw), axis=1)
    uniq = np.unique(cands)
    emb_c = embed_texts(lm, [corpus.cand_texts[j] for j in uniq])
    emb_q = embed_texts(lm, [corpus.query_texts[q] for q in queries])
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
