"""Relevance probes: queries with paraphrase positives, lexical distractors, negatives.

Two sets ship with the package, written by hand for attn-market (CC0): ``dev``
(64 queries) to choose a relevance definition and its settings on, and
``heldout`` (64 other queries) to report it on once. Each item is one query of a
corpus vertical with

- ``positives``: paraphrases of what the query wants that share few of its words;
- ``distractors``: texts that share the query's words but are off-topic;
- ``negatives``: unrelated texts (positives of other-vertical items of the set).

A set is a JSON file ``{"name", "licence", "description", "items": [{"id",
"vertical", "query", "positives", "distractors", "negatives"}]}``; users can
point :func:`load_probe` at their own file of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attn_env.errors import UserError
from attn_env.fileio import read_user_json

__all__ = ["KINDS", "PROBE_SETS", "ProbeItem", "ProbeSet", "load_probe", "probe_path"]

PROBE_SETS = ("dev", "heldout")
"The shipped sets."
KINDS = ("positives", "distractors", "negatives")
"Candidate kinds of an item, in the order :attr:`ProbeItem.candidates` lists them."
MAX_PROBE_BYTES = 16 * 2**20
"Size cap of a probe file (the shipped ones are under 100 kB)."


@dataclass(frozen=True)
class ProbeItem:
    """One query and its labelled candidates."""

    id: str
    vertical: str
    query: str
    positives: tuple[str, ...]
    distractors: tuple[str, ...]
    negatives: tuple[str, ...]

    @property
    def candidates(self) -> list[str]:
        """Positives, then distractors, then negatives."""
        return [*self.positives, *self.distractors, *self.negatives]

    @property
    def kinds(self) -> list[str]:
        """The kind (``positive``, ``distractor``, ``negative``) of each candidate."""
        return [
            kind[:-1]
            for kind in KINDS
            for _ in getattr(self, kind)  # one label per text of that kind
        ]


@dataclass(frozen=True)
class ProbeSet:
    """A named list of probe items and the licence of their texts."""

    name: str
    licence: str
    items: tuple[ProbeItem, ...]


def probe_path(name: str) -> Path:
    """The JSON file of a shipped probe set (``dev`` or ``heldout``)."""
    if name not in PROBE_SETS:
        raise UserError(f"unknown probe set {name!r}; known: {', '.join(PROBE_SETS)}")
    return Path(__file__).resolve().parent / f"{name}.json"


def _item(row: object, where: str) -> ProbeItem:
    """One checked item; ``UserError`` naming the item and the bad field."""
    if not isinstance(row, dict):
        raise UserError(f"{where}: an item must be an object, got {type(row).__name__}")
    for key in ("id", "vertical", "query"):
        if not (isinstance(row.get(key), str) and row[key].strip()):
            raise UserError(f"{where}: {key!r} must be a non-empty string")
    texts = {}
    for kind in KINDS:
        value = row.get(kind, [])
        if not (
            isinstance(value, list)
            and all(isinstance(t, str) and t.strip() for t in value)
        ):
            raise UserError(
                f"{where} ({row['id']}): {kind!r} must be a list of non-empty strings"
            )
        texts[kind] = tuple(value)
    if not texts["positives"]:
        raise UserError(f"{where} ({row['id']}): needs at least one positive")
    return ProbeItem(row["id"], row["vertical"], row["query"], **texts)


def load_probe(name_or_path: str | Path = "dev") -> ProbeSet:
    """Read a shipped probe set by name, or a probe JSON file by path.

    A user's file is read with limits (:func:`attn_env.fileio.read_user_json`:
    a regular file of at most :data:`MAX_PROBE_BYTES`, bounded nesting, no
    NaN), then every field is checked.

    Raises:
        UserError: an unknown set name, a missing or unreadable file, or a
            file of the wrong shape (naming the item and field).
    """
    path = (
        probe_path(name_or_path)
        if isinstance(name_or_path, str) and name_or_path in PROBE_SETS
        else Path(name_or_path)
    )
    try:
        doc = read_user_json(path, "probe file", MAX_PROBE_BYTES)
    except FileNotFoundError:
        raise UserError(
            f"no probe file {str(path)!r}; shipped sets: {', '.join(PROBE_SETS)}"
        ) from None
    rows = doc.get("items") if isinstance(doc, dict) else None
    if not isinstance(rows, list) or not rows:
        raise UserError(f"{str(path)!r}: expected an object with a non-empty 'items'")
    for key in ("name", "licence"):
        if key in doc and not isinstance(doc[key], str):
            raise UserError(
                f"{str(path)!r}: {key!r} must be a string, got {doc[key]!r}"
            )
    items = tuple(_item(row, f"{path.name} item {i}") for i, row in enumerate(rows))
    return ProbeSet(doc.get("name", path.stem), doc.get("licence", "unknown"), items)
