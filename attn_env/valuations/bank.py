"""The attention bank: r and alpha precomputed once, memory-mapped for RL.

This module is the public face of the bank: it opens banks and maps relevance,
and re-exports the names of the modules that do the rest, so
``from attn_env.valuations.bank import ...`` keeps working for all of them:

- :mod:`~attn_env.valuations.corpus_io`: reading a corpus (``load_corpus``);
- :mod:`~attn_env.valuations.bank_settings`: ``BankSettings``, ``bank_key``,
  ``default_bank_dir``;
- :mod:`~attn_env.valuations.bank_build`: ``build_bank``;
- :mod:`~attn_env.valuations.bank_validate`: ``validate_bank``.

A bank is a folder ``<bank_dir>/<key>/`` holding ``.npy`` arrays (read with
``mmap_mode="r"``) and a ``manifest.json`` written last:

======================  ========================  ===============================
file                    shape, dtype              meaning
======================  ========================  ===============================
``queries.npy``         ``[Q] int32``             corpus index of each query
``candidates.npy``      ``[Q, C] int32``          corpus index of its candidates
``own.npy``             ``[Q, C] bool``           candidate of the query's vertical
``relevance_raw.npy``   ``[Q, C] float32``        ``r_raw`` (``pair_relevance``)
``page_candidates.npy`` ``[Q, P, Kmax] int32``    slot fill of each page layout
``alpha.npy``           ``[Q, P, Kmax, Kmax]``    row K-1: the K-slot page's alpha
======================  ========================  ===============================

Candidate sets. Each query gets ``C = candidates_per_query`` candidates:
``round(C * own_fraction)`` drawn without replacement from its own vertical and
the rest from the other verticals, in a shuffled order (seeded by ``seed``).
Page layouts: for each query, ``P = pages`` seeded permutations of its candidate
set; the K-slot page of layout p holds the first K candidates of permutation p,
for every K = 1..Kmax (K = 1 gives alpha = [1]). alpha is stored *sorted
descending*, the order in which mechanisms fill slots.

Relevance in [0, 1]. The bank stores ``r_raw``; :func:`map_relevance` maps it per
query q over its candidate set c = 1..C, at load time (so the map is not part of
the key):

- ``logistic`` (default): ``r = 1 / (1 + exp(-(r_raw - mean_q) / std_q))``, a
  logistic of the z-score within the query's candidate set (a candidate at the
  set's mean gets 0.5, one standard deviation above it 0.73);
- ``max``: ``r = r_raw / max_c r_raw`` (proportional to the attention mass; the
  most attended candidate gets 1). Raw masses of one query's candidates are close
  (typically within 20 %), so this map leaves r in a narrow band near 1.

The key is a SHA-256 of the model identity (the SHA-256 of the model's weights,
config and tokenizer files, so a copied or reinstalled model keeps its banks;
:func:`~attn_env.valuations.model.model_identity`), the corpus content hash and
every setting that changes a number, so a changed setting never reuses a stale
bank. A build writes into ``<bank_dir>/.tmp-*``
and renames the folder into place after the manifest, so an interrupted build
leaves no bank (a stale temp folder is ignored and removed by the next build).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.errors import UserError
from attn_env.valuations.bank_build import build_bank
from attn_env.valuations.bank_check import (
    ARRAY_LAYOUT,
    check_arrays,
    open_array,
    read_manifest,
)
from attn_env.valuations.bank_settings import (
    FORMAT_VERSION,
    BankSettings,
    bank_key,
    default_bank_dir,
)
from attn_env.valuations.bank_validate import validate_bank
from attn_env.valuations.cache import bank_root, shipped_bank
from attn_env.valuations.corpus_io import Corpus, load_corpus, shipped_corpus_dir

__all__ = [
    "Bank",
    "BankSettings",
    "Corpus",
    "bank_key",
    "build_bank",
    "default_bank_dir",
    "find_bank",
    "load_bank",
    "load_corpus",
    "map_relevance",
    "shipped_corpus_dir",
    "validate_bank",
]

ARRAYS = tuple(ARRAY_LAYOUT)
"The ``.npy`` files of a bank (see the table above)."
RELEVANCE_MAPS = ("logistic", "max")
"Known maps of ``r_raw`` into [0, 1] (see :func:`map_relevance`)."


@dataclass(frozen=True)
class Bank:
    """A loaded bank: memory-mapped arrays and the manifest."""

    path: Path
    manifest: dict[str, Any]
    queries: NDArray[np.int32]
    candidates: NDArray[np.int32]
    own: NDArray[np.bool_]
    relevance_raw: NDArray[np.float32]
    page_candidates: NDArray[np.int32]
    alpha: NDArray[np.float32]

    @property
    def n_queries(self) -> int:
        """Queries Q in the bank."""
        return int(self.relevance_raw.shape[0])

    @property
    def candidates_per_query(self) -> int:
        """Candidate set size C."""
        return int(self.relevance_raw.shape[1])

    @property
    def pages(self) -> int:
        """Page layouts P per query."""
        return int(self.alpha.shape[1])

    @property
    def max_slots(self) -> int:
        """Largest page Kmax."""
        return int(self.alpha.shape[2])


def load_bank(path: str | Path) -> Bank:
    """Open a built bank folder (arrays memory-mapped read-only), every file checked.

    The folder may come from a user (``bank_path``) or a shared cache, so it
    is read as hostile input (:mod:`~attn_env.valuations.bank_check`): regular
    files inside the folder only, size caps, the manifest's fields typed, every
    array's dtype and rank as in the table above, shapes that agree, and
    values in range (finite relevance, alpha pages that sum to 1).

    Args:
        path: a bank folder ``<bank_dir>/<key>``.

    Returns:
        The bank.

    Raises:
        FileNotFoundError: when the folder or one of its files is missing.
        UserError: one line naming the file and field that is wrong (an old
            format version included).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"attention bank folder {str(path)!r} does not exist")
    if not path.is_dir():
        raise UserError(f"{path}: an attention bank is a folder, this is not one")
    if not (path / "manifest.json").exists():
        raise FileNotFoundError(
            f"{str(path)!r} is not a complete attention bank (no manifest.json)"
        )
    manifest = read_manifest(path, FORMAT_VERSION)
    arrays = {name: open_array(path, name) for name in ARRAYS}
    check_arrays(path, arrays)
    return Bank(path=path, manifest=manifest, **arrays)


def find_bank(
    settings: BankSettings, model_id: str, corpus_hash: str, bank_dir: str | Path | None
) -> Path | None:
    """The folder of a complete bank for these inputs, or ``None``.

    Args:
        settings: the bank settings.
        model_id: the model identity.
        corpus_hash: the corpus content hash.
        bank_dir: parent folder of banks (default :func:`default_bank_dir`).

    Returns:
        ``<bank_dir>/<key>`` when it holds a manifest, else the bank of that
        key shipped in the package (:mod:`~attn_env.valuations.shipped_banks`),
        else ``None``.
    """
    root = bank_root(bank_dir)
    key = bank_key(settings, model_id, corpus_hash)
    path = root / key
    return path if (path / "manifest.json").is_file() else shipped_bank(key)


def map_relevance(raw: NDArray, how: str = "logistic") -> NDArray[np.float64]:
    """Map ``r_raw [Q, C]`` into [0, 1] per query (see the module docstring).

    Args:
        raw: ``r_raw`` of each query's candidates.
        how: ``logistic`` or ``max``.

    Returns:
        ``r [Q, C]`` in [0, 1], float64.

    Raises:
        UserError: for an unknown map, or ``max`` on a row with no r_raw > 0.
    """
    raw = np.asarray(raw, dtype=np.float64)
    if how == "max":
        top = raw.max(axis=1, keepdims=True)
        if (top <= 0).any():
            q = int(np.flatnonzero(top[:, 0] <= 0)[0])
            raise UserError(
                f"relevance 'max' divides by each query's largest r_raw, but query "
                f"row {q} has none above 0; use relevance 'logistic'"
            )
        return raw / top
    if how == "logistic":
        z = (raw - raw.mean(axis=1, keepdims=True)) / np.maximum(
            raw.std(axis=1, keepdims=True), 1e-12
        )
        return 1.0 / (1.0 + np.exp(-z))
    raise UserError(
        f"unknown relevance map {how!r}; known: {', '.join(RELEVANCE_MAPS)}"
    )
