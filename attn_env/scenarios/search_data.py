"""A user's own search day: ``queries.jsonl``, ``ads.jsonl`` and ``advertisers.yaml``.

The folder named by the config's ``data`` key holds (docs/search_day.md,
"Your own data"):

- ``queries.jsonl`` and ``ads.jsonl``: one JSON object a line,
  ``{"id", "text", "vertical"}``; an ad may add ``"advertiser": NAME`` to say who
  owns it (ads without one are given to an advertiser of their vertical, drawn
  from the seed);
- ``advertisers.yaml``: a list of advertisers, each
  ``{name, verticals: [...], value_per_conversion, target_cpa, budget}``.

Every file is read with the project's limits; a bad row or entry is refused in
one line naming the file and the line (JSONL) or the entry (YAML). The
attention bank of the corpus is built once with the search-day settings (on the
GPU when there is one) and cached like every bank.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from attn_env.config import read_config_yaml
from attn_env.errors import UserError
from attn_env.fileio import read_user_bytes, strict_json_loads
from attn_env.scenarios.search_advertisers import Advertisers
from attn_env.valuations.corpus_io import MAX_CORPUS_BYTES, Corpus, load_corpus

__all__ = ["ADVERTISER_KEYS", "load_search_data"]

ADVERTISER_KEYS = ("name", "verticals", "value_per_conversion", "target_cpa", "budget")
"Keys of an entry of advertisers.yaml (all required)."


def load_search_data(
    folder: str | Path, rng: np.random.Generator
) -> tuple[Corpus, Advertisers]:
    """The corpus and advertisers of a data folder (ads' owners resolved)."""
    root = Path(folder).expanduser()
    corpus = load_corpus(root, candidates="ads.jsonl")
    entries = read_config_yaml(root / "advertisers.yaml")
    where = str(root / "advertisers.yaml")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{where}: expected a non-empty list of advertisers")
    names, verts, value, tcpa, budget = [], [], [], [], []
    known_verticals = set(corpus.cand_verticals)
    for i, e in enumerate(entries):
        at = f"{where}: entry {i + 1}"
        if not isinstance(e, dict):
            raise UserError(
                f"{at}: expected a mapping with keys {', '.join(ADVERTISER_KEYS)}"
            )
        missing = [k for k in ADVERTISER_KEYS if k not in e]
        extra = [k for k in e if k not in ADVERTISER_KEYS]
        if missing or extra:
            what = f"missing {missing}" if missing else f"unknown keys {extra}"
            raise UserError(f"{at}: {what}; expected keys {', '.join(ADVERTISER_KEYS)}")
        name = e["name"]
        if not isinstance(name, str) or not name.strip() or name in names:
            raise UserError(f"{at}: name must be a new non-empty string, got {name!r}")
        at = f"{where}: entry {i + 1} ({name})"
        v = e["verticals"]
        if not isinstance(v, list) or not v or any(x not in known_verticals for x in v):
            raise UserError(
                f"{at}: verticals must be a non-empty list of the ads' verticals "
                f"({', '.join(sorted(known_verticals))}), got {v!r}"
            )
        nums = [_positive(e[k], f"{at}: {k}") for k in ADVERTISER_KEYS[2:]]
        names.append(name)
        verts.append(tuple(v))
        value.append(nums[0])
        tcpa.append(nums[1])
        budget.append(nums[2])
    owner = _owners(root / "ads.jsonl", names, verts, corpus, rng)
    return corpus, Advertisers(
        names=names,
        value=np.array(value),
        target_cpa=np.array(tcpa),
        budget=np.array(budget),
        verticals=verts,
        ad_owner=owner,
    )


def _positive(x: Any, name: str) -> float:
    if (
        isinstance(x, bool)
        or not isinstance(x, int | float)
        or not math.isfinite(x)
        or x <= 0
    ):
        raise UserError(f"{name} must be a finite number > 0, got {x!r}")
    return float(x)


def _owners(path: Path, names, verts, corpus: Corpus, rng) -> np.ndarray:
    """Owner index of every ad: its ``advertiser`` field, else a seller of its
    vertical drawn from ``rng`` (-1 where nobody sells in the vertical)."""
    index = {n: i for i, n in enumerate(names)}
    data = read_user_bytes(path, "ads file", MAX_CORPUS_BYTES)
    owner = np.full(len(corpus.cand_ids), -1, dtype=np.int64)
    row = 0
    for lineno, line in enumerate(data.decode("utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        named = strict_json_loads(line).get("advertiser")
        vertical = corpus.cand_verticals[row]
        if named is not None:
            if named not in index:
                raise UserError(
                    f"{path}:{lineno}: advertiser {named!r} is not in advertisers.yaml"
                )
            if vertical not in verts[index[named]]:
                raise UserError(
                    f"{path}:{lineno}: advertiser {named!r} does not sell in vertical "
                    f"{vertical!r}"
                )
            owner[row] = index[named]
        else:
            sellers = [i for i, v in enumerate(verts) if vertical in v]
            if sellers:
                owner[row] = sellers[int(rng.integers(len(sellers)))]
        row += 1
    return owner
