"""Banks that ship prebuilt in the package, so a first attention run needs no model.

A bank's key (:func:`~attn_env.valuations.bank_settings.bank_key`) is a hash
of the model's content digests, the corpus's and every setting, so a bank
built here for the pinned MiniLM and the shipped corpus is the bank a user's
machine would build: :func:`~attn_env.valuations.bank.find_bank` and
:func:`~attn_env.valuations.bank_build.build_bank` look in
``attn_env/valuations/prebuilt/<key>/`` when the cache holds no bank of
that key. When the installed model's bytes (or the corpus, or a setting)
differ, the key differs, no shipped bank matches, and the bank is built and
cached as before.

Shipped (:data:`SHIPPED`): on the shipped corpus, the default settings
(``BankSettings()``: the README snippet, ``configs/gsp_attention.yaml``,
``configs/fairness_attention.yaml``) and those of ``configs/valuations.yaml``
(about 0.3 MB together); on the search-day traffic corpus
(``attn_env/scenarios/data/search_day/``, 2000 queries x 10000 ads), the bank
of the ``search_day`` scenario (:func:`search_day_bank`, 0.75 MB). An entry
names its corpus with the key ``corpus`` (:data:`CORPORA`; the shipped corpus
when absent); its other keys override ``BankSettings()``.

They are built on the CPU in fp32. Regenerate them (after a change to a
corpus, the model pin, the bank format or the attention code) with::

    python -m attn_env.valuations.shipped_banks            # every entry
    python -m attn_env.valuations.shipped_banks search_day # just that one

which builds the entries into the package and removes shipped folders no
entry names any more; ``tests/test_bank_cache.py`` fails while a shipped
bank is stale.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attn_env.errors import UserError
from attn_env.valuations.bank_settings import BankSettings, bank_key
from attn_env.valuations.cache import shipped_bank, shipped_bank_dir
from attn_env.valuations.corpus_io import (
    Corpus,
    load_corpus,
    search_day_corpus_dir,
    shipped_corpus_dir,
)

if TYPE_CHECKING:
    from attn_env.valuations.bank import Bank

__all__ = [
    "CORPORA",
    "SHIPPED",
    "load_named_corpus",
    "rebuild_shipped",
    "search_day_bank",
    "shipped_bank",
    "shipped_bank_dir",
    "shipped_entry",
]

CORPORA: dict[str, tuple[Callable[[], Path], str]] = {
    "shipped": (shipped_corpus_dir, "candidates.jsonl"),
    "search_day": (search_day_corpus_dir, "ads.jsonl"),
}
"Corpora a shipped bank may be built on: name -> (folder, candidates file name)."

SHIPPED: dict[str, dict[str, Any]] = {
    "default": {},
    "configs/valuations.yaml": {
        "n_queries": None,
        "candidates_per_query": 32,
        "pages": 4,
    },
    "search_day": {
        "corpus": "search_day",
        "n_queries": None,
        "candidates_per_query": 24,
        "own_fraction": 0.75,
        "pages": 2,
        "max_slots": 4,
        "seed": 0,
    },
}
"""The banks that ship, by where used: ``corpus`` (a key of :data:`CORPORA`,
default ``"shipped"``) and overrides of ``BankSettings()``."""


_KEY = re.compile(r"[0-9a-f]{24}")
"Names of bank folders (``bank_key``): the only entries a rebuild deletes."


def _is_bank_folder(path: Path) -> bool:
    """A real folder (not a link) named like a bank key: what a rebuild may delete."""
    return bool(_KEY.fullmatch(path.name)) and path.is_dir() and not path.is_symlink()


def load_named_corpus(name: str) -> Corpus:
    """The corpus of :data:`CORPORA` called ``name`` (``UserError`` if none is)."""
    if name not in CORPORA:
        raise UserError(
            f"unknown corpus {name!r}; expected one of {', '.join(CORPORA)}"
        )
    folder, candidates = CORPORA[name]
    return load_corpus(folder(), candidates=candidates)


def shipped_entry(name: str) -> tuple[str, BankSettings]:
    """The corpus name and bank settings of the :data:`SHIPPED` entry ``name``.

    Raises:
        UserError: for a name that is no entry, naming the entries.
    """
    if name not in SHIPPED:
        raise UserError(
            f"no shipped bank {name!r}; expected one of {', '.join(SHIPPED)}"
        )
    params = dict(SHIPPED[name])
    return params.pop("corpus", "shipped"), BankSettings(**params)


def rebuild_shipped(
    device: str = "cpu", only: list[str] | None = None, progress: bool = False
) -> list[Path]:
    """Build banks of :data:`SHIPPED` into the package; drop stale folders.

    Builds with the shipped MiniLM on ``device`` (CPU fp32 by default, what
    the shipped banks are), each on its entry's corpus, from scratch (a
    folder of the same key is removed first: the attention code is not part
    of the key). Folders whose key no entry has for today's model and corpora
    are removed; the banks of entries not in ``only`` are left as they are.

    Args:
        device: where the model runs.
        only: the entries to build (names of :data:`SHIPPED`); default all.
        progress: show the build's progress bar on stderr.

    Returns:
        The folders built.

    Raises:
        UserError: for a name in ``only`` that is no entry.
    """
    from attn_env.valuations.bank_build import build_bank
    from attn_env.valuations.model import load_model, model_identity

    names = list(SHIPPED) if only is None else list(only)
    entries = {name: shipped_entry(name) for name in SHIPPED}
    for name in names:
        if name not in entries:
            shipped_entry(name)  # raises, naming the entries
    corpora = {c: load_named_corpus(c) for c in {c for c, _ in entries.values()}}
    model_id = model_identity()
    current = {
        name: bank_key(settings, model_id, corpora[c].content_hash)
        for name, (c, settings) in entries.items()
    }
    root = shipped_bank_dir()
    lm = load_model(device=device) if names else None
    built = []
    for name in names:
        corpus_name, settings = entries[name]
        stale = root / current[name]
        if _is_bank_folder(stale):
            shutil.rmtree(stale)  # rebuilt from scratch, never reused
        built.append(
            build_bank(
                settings, corpora[corpus_name], lm, bank_dir=root, progress=progress
            )
        )
    for entry in root.iterdir():
        if _is_bank_folder(entry) and entry.name not in current.values():
            shutil.rmtree(entry)
    return built


def search_day_bank(bank_dir: str | Path | None = None, build: bool = True) -> Bank:
    """The attention bank of the ``search_day`` scenario (:data:`SHIPPED` entry).

    Over the shipped search-day corpus (queries x ads): every query, 24
    candidates (18 of its own vertical), two page layouts of up to 4 slots.
    The bank of today's model and corpus is looked up in ``bank_dir`` then in
    the package, where it ships; only when neither holds it (another model's
    bytes, an edited corpus) is it built, and only then are torch and
    transformers imported.

    Args:
        bank_dir: the cache folder to look in and build into (default
            :func:`~attn_env.valuations.cache.default_bank_dir`).
        build: build the bank when it is found nowhere; ``False`` raises.

    Returns:
        The loaded bank (arrays memory-mapped).

    Raises:
        UserError: with ``build=False`` when no bank matches.
    """
    from attn_env.valuations.bank import find_bank, load_bank
    from attn_env.valuations.model import model_identity

    corpus_name, settings = shipped_entry("search_day")
    corpus = load_named_corpus(corpus_name)
    path = find_bank(settings, model_identity(), corpus.content_hash, bank_dir)
    if path is None:
        if not build:
            raise UserError(
                "no search-day attention bank for this model and corpus in "
                f"{bank_dir or 'the cache'} or the package; pass build=True or run "
                "python -m attn_env.valuations.shipped_banks search_day"
            )
        from attn_env.valuations.bank_build import build_bank

        path = build_bank(settings, corpus, bank_dir=bank_dir)
    return load_bank(path)


def main(argv: list[str] | None = None) -> int:
    """Command line: rebuild the named entries of :data:`SHIPPED` (default all)."""
    for path in rebuild_shipped(only=argv or None, progress=True):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
