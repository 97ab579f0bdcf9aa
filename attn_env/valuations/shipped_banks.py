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

Shipped: the default settings (``BankSettings()``: the README snippet,
``configs/gsp_attention.yaml``, ``configs/fairness_attention.yaml``) and those
of ``configs/valuations.yaml`` (:data:`SHIPPED`); about 0.3 MB together.
They are built on the CPU in fp32. Regenerate them (after a change to the
corpus, the model pin, the bank format or the attention code) with::

    python -m attn_env.valuations.shipped_banks

which builds each one into the package and removes shipped folders no
setting names any more; ``tests/test_bank_cache.py`` fails while a shipped
bank is stale.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from attn_env.valuations.cache import shipped_bank, shipped_bank_dir

__all__ = ["SHIPPED", "rebuild_shipped", "shipped_bank", "shipped_bank_dir"]

SHIPPED: dict[str, dict[str, Any]] = {
    "default": {},
    "configs/valuations.yaml": {
        "n_queries": None,
        "candidates_per_query": 32,
        "pages": 4,
    },
}
"The settings whose banks ship (overrides of ``BankSettings()``), by where used."


_KEY = re.compile(r"[0-9a-f]{24}")
"Names of bank folders (``bank_key``): the only entries a rebuild deletes."


def _is_bank_folder(path: Path) -> bool:
    """A real folder (not a link) named like a bank key: what a rebuild may delete."""
    return bool(_KEY.fullmatch(path.name)) and path.is_dir() and not path.is_symlink()


def rebuild_shipped(device: str = "cpu") -> list[Path]:
    """Build every bank of :data:`SHIPPED` into the package; drop stale folders.

    Builds with the shipped MiniLM and corpus on ``device`` (CPU fp32 by
    default, what the shipped banks are) and returns their folders.
    """
    from attn_env.valuations.bank_build import build_bank
    from attn_env.valuations.bank_settings import BankSettings, bank_key
    from attn_env.valuations.corpus_io import load_corpus
    from attn_env.valuations.model import load_model

    root = shipped_bank_dir()
    corpus = load_corpus()
    lm = load_model(device=device)
    keep = []
    for params in SHIPPED.values():
        settings = BankSettings(**params)
        stale = root / bank_key(settings, lm.identity, corpus.content_hash)
        if _is_bank_folder(stale):
            shutil.rmtree(stale)  # rebuilt from scratch, never reused
        keep.append(build_bank(settings, corpus, lm, bank_dir=root))
    for entry in root.iterdir():
        if _is_bank_folder(entry) and entry not in keep:
            shutil.rmtree(entry)
    return keep


if __name__ == "__main__":
    for path in rebuild_shipped():
        print(path)
