"""Bank settings and the cache key of a bank.

``default_bank_dir`` (the folder banks are cached in) lives in
:mod:`~attn_env.valuations.cache` and is re-exported here.

:class:`BankSettings` is everything that changes a number in a bank. Which
attention is read (layers, heads, source rows, pair score) is an
:class:`~attn_env.valuations.model.AttentionSpec`, held as the ``attention``
field rather than repeated here, so the two can never drift apart.

Users still write the settings flat (``valuation_params: {layers: [3], heads:
max, pages: 4}``), and the key and manifest still see them flat:
:meth:`BankSettings.to_params` gives the flat dict, in the order of the
attention fields followed by the bank's own fields. The key is a hash of that
dict, the model identity (SHA-256 digests of the model's files, so a copied
or reinstalled model keeps its banks), the corpus hash and
:data:`FORMAT_VERSION`, so a changed setting never reuses a stale bank.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from attn_env.checks import reject_unknown
from attn_env.errors import ConfigError
from attn_env.valuations.cache import default_bank_dir
from attn_env.valuations.model import AttentionSpec

__all__ = [
    "FORMAT_VERSION",
    "BankSettings",
    "bank_key",
    "default_bank_dir",
]

FORMAT_VERSION = 1
"Version of the bank layout; part of the key and checked when a bank is loaded."

_ATTENTION_FIELDS = tuple(f.name for f in dataclasses.fields(AttentionSpec))
_POSITIVE_INTS = (
    "max_query_tokens",
    "max_candidate_tokens",
    "candidates_per_query",
    "pages",
    "max_slots",
)


@dataclass(frozen=True, init=False)
class BankSettings:
    """Everything that changes a number in the bank (all part of its key).

    Construct it with flat keywords, as users write them
    (``BankSettings(layers=[2], pages=4)``), or with an ``attention`` spec
    (``BankSettings(attention=AttentionSpec(layers=2), pages=4)``). Flat
    attention keywords given together with ``attention`` override the matching
    fields of that spec, which is what ``dataclasses.replace(s, layers=2)``
    relies on.
    """

    attention: AttentionSpec
    "Which attention is read: layers, head aggregation, source rows, pair score."
    max_query_tokens: int
    "Query truncation, in word pieces."
    max_candidate_tokens: int
    "Candidate truncation, in word pieces."
    n_queries: int | None
    "Queries in the bank (a seeded subset); ``None``: all of the corpus."
    candidates_per_query: int
    "Candidate set size C per query."
    own_fraction: float
    "Share of the candidate set drawn from the query's own vertical."
    pages: int
    "Page layouts P per query."
    max_slots: int
    "Largest page Kmax (alpha stored for every K = 1..Kmax)."
    seed: int
    "Seed of query subset, candidate sets and page layouts."

    def __init__(
        self,
        *,
        attention: AttentionSpec | None = None,
        max_query_tokens: int = 24,
        max_candidate_tokens: int = 40,
        n_queries: int | None = 96,
        candidates_per_query: int = 16,
        own_fraction: float = 0.25,
        pages: int = 2,
        max_slots: int = 5,
        seed: int = 0,
        **attention_fields: Any,
    ) -> None:
        """Check and store the settings.

        Args:
            attention: which attention is read; default ``AttentionSpec()``.
            max_query_tokens: see the field of the same name.
            max_candidate_tokens: see the field of the same name.
            n_queries: see the field of the same name.
            candidates_per_query: see the field of the same name.
            own_fraction: see the field of the same name.
            pages: see the field of the same name.
            max_slots: see the field of the same name.
            seed: see the field of the same name.
            **attention_fields: ``layers``, ``heads``, ``source``, ``score``
                (fields of :class:`AttentionSpec`), overriding ``attention``'s.

        Raises:
            TypeError: for a keyword that is no setting, or an ``attention``
                that is not an :class:`AttentionSpec`.
            ValueError: naming the first setting out of range.
        """
        for name in attention_fields:
            if name not in _ATTENTION_FIELDS:
                raise TypeError(
                    f"BankSettings.__init__() got an unexpected keyword argument "
                    f"{name!r}"
                )
        if attention is None:
            attention = AttentionSpec(**attention_fields)
        elif not isinstance(attention, AttentionSpec):
            raise TypeError(
                f"attention must be an AttentionSpec, got {type(attention).__name__}"
            )
        elif attention_fields:
            attention = dataclasses.replace(attention, **attention_fields)
        values = {
            "attention": attention,
            "max_query_tokens": max_query_tokens,
            "max_candidate_tokens": max_candidate_tokens,
            "n_queries": n_queries,
            "candidates_per_query": candidates_per_query,
            "own_fraction": own_fraction,
            "pages": pages,
            "max_slots": max_slots,
            "seed": seed,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)
        self._check()

    def _check(self) -> None:
        """Raise ``ValueError`` naming the first bank setting out of range."""
        for name in _POSITIVE_INTS:
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if self.n_queries is not None and not (
            isinstance(self.n_queries, int) and self.n_queries >= 1
        ):
            raise ConfigError(
                f"n_queries must be null or an integer >= 1, got {self.n_queries!r}"
            )
        if not 0.0 <= self.own_fraction <= 1.0:
            raise ConfigError(
                f"own_fraction must be in [0, 1], got {self.own_fraction!r}"
            )
        if self.max_slots > self.candidates_per_query:
            raise ConfigError(
                f"max_slots={self.max_slots} exceeds candidates_per_query="
                f"{self.candidates_per_query}: a page holds distinct candidates"
            )

    @property
    def spec(self) -> AttentionSpec:
        """The attention spec (the same object as :attr:`attention`)."""
        return self.attention

    @classmethod
    def own_names(cls) -> tuple[str, ...]:
        """The bank's own setting names (every field but ``attention``)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "attention")

    def to_params(self) -> dict[str, Any]:
        """The settings as flat keyword params, as users write them.

        Returns:
            The attention fields (``layers``, ``heads``, ``source``, ``score``)
            then the bank's own fields, in declaration order: the ``settings``
            of the key payload and of ``manifest.json``.
        """
        return {
            **dataclasses.asdict(self.attention),
            **{name: getattr(self, name) for name in self.own_names()},
        }

    @classmethod
    def from_params(
        cls, params: dict[str, Any], also_known: tuple[str, ...] = ()
    ) -> BankSettings:
        """Build from flat keyword params, naming unknown keys.

        Args:
            params: bank settings by name (attention fields and the bank's own).
            also_known: other accepted names, listed in the error message.

        Returns:
            The settings.

        Raises:
            ValueError: naming every unknown key (``attention`` included: users
                write the attention fields flat), or a setting out of range.
        """
        own = cls.own_names()
        reject_unknown(
            AttentionSpec,
            [key for key in params if key not in own],
            "valuation parameter(s)",
            (*own, *also_known),
        )
        return cls(**params)


def bank_key(settings: BankSettings, model_id: str, corpus_hash: str) -> str:
    """The folder name of a bank: a hash of model, corpus and settings.

    Args:
        settings: the bank settings (every one goes into the key).
        model_id: the model identity (content digests of its files,
            :func:`~attn_env.valuations.model.model_identity`).
        corpus_hash: :attr:`Corpus.content_hash` of the corpus.

    Returns:
        The first 24 hex digits of a SHA-256.
    """
    payload = json.dumps(
        {
            "format": FORMAT_VERSION,
            "model": model_id,
            "corpus": corpus_hash,
            "settings": settings.to_params(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]
