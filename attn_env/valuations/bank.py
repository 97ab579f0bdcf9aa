"""The attention bank: r and alpha precomputed once, memory-mapped for RL.

A bank is a folder ``<bank_dir>/<key>/`` holding ``.npy`` arrays (read with
``mmap_mode="r"``) and a ``manifest.json`` written last:

======================  ========================  ===============================
file                    shape, dtype              meaning
======================  ========================  ===============================
``queries.npy``         ``[Q] int32``             corpus index of each query
``candidates.npy``      ``[Q, C] int32``          corpus index of its candidates
``own.npy``             ``[Q, C] bool``           candidate of the query's vertical
``relevance_raw.npy``   ``[Q, C] float32``        ``r_raw`` (``model.pair_score``)
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

The key is a SHA-256 of the model identity (name, weights size and mtime), the
corpus content hash and every setting that changes a number, so a changed
setting never reuses a stale bank. A build writes into ``<bank_dir>/.tmp-*``
and renames the folder into place after the manifest, so an interrupted build
leaves no bank (a stale temp folder is ignored and removed by the next build).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.config import reject_unknown
from attn_env.valuations.model import AttentionSpec

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

FORMAT_VERSION = 1
ARRAYS = (
    "queries",
    "candidates",
    "own",
    "relevance_raw",
    "page_candidates",
    "alpha",
)


def default_bank_dir() -> Path:
    """``$ATTN_MARKET_CACHE`` if set, else ``~/.cache/attn-market/banks``."""
    env = os.environ.get("ATTN_MARKET_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "attn-market" / "banks"


def shipped_corpus_dir() -> Path:
    """The folder of the corpus that ships with the package."""
    return Path(__file__).resolve().parent / "corpus"


# --------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class Corpus:
    """Queries and candidate texts, each with a vertical (topic label)."""

    query_ids: list[str]
    query_texts: list[str]
    query_verticals: list[str]
    cand_ids: list[str]
    cand_texts: list[str]
    cand_verticals: list[str]
    content_hash: str


def _read_jsonl(path: Path) -> list[dict[str, str]]:
    rows = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path}:{lineno}: not valid JSON ({err.msg})"
                ) from err
            for key in ("id", "text", "vertical"):
                if not isinstance(row.get(key), str) or not row[key].strip():
                    raise ValueError(
                        f"{path}:{lineno}: expected a non-empty string {key!r}, "
                        f"got {row.get(key)!r}"
                    )
            if row["id"] in seen:
                raise ValueError(f"{path}:{lineno}: duplicate id {row['id']!r}")
            seen.add(row["id"])
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def load_corpus(path: str | Path | None = None) -> Corpus:
    """Read ``queries.jsonl`` and ``candidates.jsonl`` from a folder.

    Args:
        path: a folder with both files (JSONL rows ``{"id", "text", "vertical"}``);
            default: the shipped corpus.
    """
    folder = Path(path).expanduser() if path is not None else shipped_corpus_dir()
    files = [folder / "queries.jsonl", folder / "candidates.jsonl"]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(
                f"corpus file {str(f)!r} does not exist; a corpus folder holds "
                "queries.jsonl and candidates.jsonl"
            )
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.read_bytes())
    queries, cands = (_read_jsonl(f) for f in files)
    return Corpus(
        query_ids=[r["id"] for r in queries],
        query_texts=[r["text"] for r in queries],
        query_verticals=[r["vertical"] for r in queries],
        cand_ids=[r["id"] for r in cands],
        cand_texts=[r["text"] for r in cands],
        cand_verticals=[r["vertical"] for r in cands],
        content_hash=digest.hexdigest(),
    )


# ------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class BankSettings:
    """Everything that changes a number in the bank (all part of its key)."""

    layers: int | tuple[int, ...] = (3,)
    "1-based layers to average (a list), or an integer L: the last L layers."
    heads: str = "max"
    "Head aggregation: ``max`` or ``mean``."
    source: str = "query"
    "Source rows: ``query`` tokens or ``cls``."
    score: str = "maxsim"
    "Relevance score of a pair: ``maxsim`` or ``mass``."
    max_query_tokens: int = 24
    "Query truncation, in word pieces."
    max_candidate_tokens: int = 40
    "Candidate truncation, in word pieces."
    n_queries: int | None = 96
    "Queries in the bank (a seeded subset); ``None``: all of the corpus."
    candidates_per_query: int = 16
    "Candidate set size C per query."
    own_fraction: float = 0.25
    "Share of the candidate set drawn from the query's own vertical."
    pages: int = 2
    "Page layouts P per query."
    max_slots: int = 5
    "Largest page Kmax (alpha stored for every K = 1..Kmax)."
    seed: int = 0
    "Seed of query subset, candidate sets and page layouts."

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", self.spec.layers)  # validated, list->tuple
        for name in (
            "max_query_tokens",
            "max_candidate_tokens",
            "candidates_per_query",
            "pages",
            "max_slots",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.n_queries is not None and not (
            isinstance(self.n_queries, int) and self.n_queries >= 1
        ):
            raise ValueError(
                f"n_queries must be null or an integer >= 1, got {self.n_queries!r}"
            )
        if not 0.0 <= self.own_fraction <= 1.0:
            raise ValueError(
                f"own_fraction must be in [0, 1], got {self.own_fraction!r}"
            )
        if self.max_slots > self.candidates_per_query:
            raise ValueError(
                f"max_slots={self.max_slots} exceeds candidates_per_query="
                f"{self.candidates_per_query}: a page holds distinct candidates"
            )

    @property
    def spec(self) -> AttentionSpec:
        return AttentionSpec(
            layers=self.layers, heads=self.heads, source=self.source, score=self.score
        )

    @classmethod
    def from_params(
        cls, params: dict[str, Any], also_known: tuple[str, ...] = ()
    ) -> BankSettings:
        """Build from keyword params, naming unknown keys.

        Args:
            params: bank settings by name.
            also_known: other accepted names, listed in the error message.
        """
        reject_unknown(cls, params, "valuation parameter(s)", also_known)
        return cls(**params)


def bank_key(settings: BankSettings, model_id: str, corpus_hash: str) -> str:
    """The folder name: a hash of model, corpus and settings (24 hex digits)."""
    payload = json.dumps(
        {
            "format": FORMAT_VERSION,
            "model": model_id,
            "corpus": corpus_hash,
            "settings": dataclasses.asdict(settings),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


# ----------------------------------------------------------------------------- bank


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
        return int(self.relevance_raw.shape[0])

    @property
    def candidates_per_query(self) -> int:
        return int(self.relevance_raw.shape[1])

    @property
    def pages(self) -> int:
        return int(self.alpha.shape[1])

    @property
    def max_slots(self) -> int:
        return int(self.alpha.shape[2])


def load_bank(path: str | Path) -> Bank:
    """Open a built bank folder (arrays memory-mapped read-only)."""
    path = Path(path)
    manifest_file = path / "manifest.json"
    if not manifest_file.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is not a complete attention bank (no manifest.json)"
        )
    manifest = json.loads(manifest_file.read_text())
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"bank {str(path)!r} has format {manifest.get('format')!r}, "
            f"expected {FORMAT_VERSION}; rebuild it"
        )
    arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
    return Bank(path=path, manifest=manifest, **arrays)


def find_bank(
    settings: BankSettings, model_id: str, corpus_hash: str, bank_dir: str | Path | None
) -> Path | None:
    """The folder of a complete bank for these inputs, or ``None``."""
    root = Path(bank_dir).expanduser() if bank_dir is not None else default_bank_dir()
    path = root / bank_key(settings, model_id, corpus_hash)
    return path if (path / "manifest.json").is_file() else None


def _candidate_sets(
    settings: BankSettings, corpus: Corpus, rng: np.random.Generator
) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.bool_]]:
    """Seeded query subset and per-query candidate sets (own vertical + others)."""
    n_total = len(corpus.query_texts)
    n_q = n_total if settings.n_queries is None else min(settings.n_queries, n_total)
    queries = np.sort(rng.choice(n_total, size=n_q, replace=False)).astype(np.int32)
    cand_vert = np.asarray(corpus.cand_verticals)
    c = settings.candidates_per_query
    n_own = round(c * settings.own_fraction)
    cands = np.empty((n_q, c), dtype=np.int32)
    own = np.empty((n_q, c), dtype=bool)
    by_vertical: dict[str, tuple[NDArray, NDArray]] = {}
    for i, q in enumerate(queries):
        v = corpus.query_verticals[q]
        if v not in by_vertical:
            by_vertical[v] = (
                np.flatnonzero(cand_vert == v),
                np.flatnonzero(cand_vert != v),
            )
        same, other = by_vertical[v]
        if len(same) < n_own or len(other) < c - n_own:
            raise ValueError(
                f"query {corpus.query_ids[q]!r} (vertical {v!r}) needs {n_own} "
                f"own-vertical and {c - n_own} other candidates; the corpus has "
                f"{len(same)} and {len(other)}"
            )
        pick = np.concatenate(
            [
                rng.choice(same, size=n_own, replace=False),
                rng.choice(other, size=c - n_own, replace=False),
            ]
        )
        mine = np.arange(c) < n_own
        order = rng.permutation(c)
        cands[i], own[i] = pick[order], mine[order]
    return queries, cands, own


def build_bank(
    settings: BankSettings,
    corpus: Corpus,
    lm: Any = None,
    *,
    bank_dir: str | Path | None = None,
    model_dir: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 64,
    progress: bool = True,
) -> Path:
    """Compute r and alpha and store them as a bank; return its folder.

    An existing complete bank with the same key is reused as it is.

    Args:
        settings: what to compute (every field goes into the key).
        corpus: queries and candidates.
        lm: a :class:`~attn_env.valuations.model.LoadedModel`; default: load
            ``model_dir`` (the shipped MiniLM when ``None``) on ``device``.
        bank_dir: parent folder of banks (default :func:`default_bank_dir`).
        batch_size: sequences per forward pass.
        progress: show a tqdm progress bar on stderr.
    """
    from attn_env.valuations.model import (
        assemble_pages,
        load_model,
        model_identity,
        page_attention,
        pair_score,
        segment_mass,
        tokenize,
    )

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model_id = lm.identity if lm is not None else model_identity(model_dir)
    root = Path(bank_dir).expanduser() if bank_dir is not None else default_bank_dir()
    key = bank_key(settings, model_id, corpus.content_hash)
    final = root / key
    if (final / "manifest.json").is_file():
        return final
    if lm is None:
        lm = load_model(model_dir, device=device)
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(root)

    rng = np.random.default_rng(settings.seed)
    queries, cands, own = _candidate_sets(settings, corpus, rng)
    n_q, c = cands.shape
    p, kmax = settings.pages, settings.max_slots
    page_cands = np.stack(
        [
            np.stack([rng.permutation(cands[i])[:kmax] for _ in range(p)])
            for i in range(n_q)
        ]
    ).astype(np.int32)

    q_tok = tokenize(
        lm.tokenizer,
        [corpus.query_texts[q] for q in queries],
        settings.max_query_tokens,
    )
    needed = np.unique(cands)
    c_tok_list = tokenize(
        lm.tokenizer,
        [corpus.cand_texts[j] for j in needed],
        settings.max_candidate_tokens,
    )
    c_tok = dict(zip(needed.tolist(), c_tok_list, strict=True))
    spec = settings.spec

    # Jobs: (kind, query row, index) -- pairs first, then pages with K >= 2.
    pair_jobs = [(i, j) for i in range(n_q) for j in range(c)]
    page_jobs = [
        (i, lay, k) for i in range(n_q) for lay in range(p) for k in range(2, kmax + 1)
    ]
    total = len(pair_jobs) + len(page_jobs)

    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=root))
    try:
        out = {
            "queries": np.lib.format.open_memmap(
                tmp / "queries.npy", "w+", np.int32, (n_q,)
            ),
            "candidates": np.lib.format.open_memmap(
                tmp / "candidates.npy", "w+", np.int32, (n_q, c)
            ),
            "own": np.lib.format.open_memmap(tmp / "own.npy", "w+", np.bool_, (n_q, c)),
            "relevance_raw": np.lib.format.open_memmap(
                tmp / "relevance_raw.npy", "w+", np.float32, (n_q, c)
            ),
            "page_candidates": np.lib.format.open_memmap(
                tmp / "page_candidates.npy", "w+", np.int32, (n_q, p, kmax)
            ),
            "alpha": np.lib.format.open_memmap(
                tmp / "alpha.npy", "w+", np.float32, (n_q, p, kmax, kmax)
            ),
        }
        out["queries"][:] = queries
        out["candidates"][:] = cands
        out["own"][:] = own
        out["page_candidates"][:] = page_cands
        out["alpha"][:] = 0.0
        out["alpha"][:, :, 0, 0] = 1.0

        bar = _progress(total, progress, f"attention bank {key[:8]} on {lm.device}")
        started = time.perf_counter()
        for start in range(0, len(pair_jobs), batch_size):
            chunk = pair_jobs[start : start + batch_size]
            page = assemble_pages(
                lm.tokenizer,
                [q_tok[i] for i, _ in chunk],
                [[c_tok[int(cands[i, j])]] for i, j in chunk],
            )
            score = pair_score(page_attention(lm, page, spec), page.segment, spec)
            rows, cols = np.asarray(chunk).T
            out["relevance_raw"][rows, cols] = score
            bar.update(len(chunk))
        pair_seconds = time.perf_counter() - started
        # Pages grouped by K so each batch holds sequences of similar length.
        page_jobs.sort(key=lambda job: job[2])
        for start in range(0, len(page_jobs), batch_size):
            chunk = page_jobs[start : start + batch_size]
            page = assemble_pages(
                lm.tokenizer,
                [q_tok[i] for i, _, _ in chunk],
                [
                    [c_tok[int(x)] for x in page_cands[i, lay, :k]]
                    for i, lay, k in chunk
                ],
            )
            kk = max(k for _, _, k in chunk)
            mass = segment_mass(
                page_attention(lm, page, spec), page.segment, kk + 1, spec
            )
            for row, (i, lay, k) in enumerate(chunk):
                slots = mass[row, 1 : k + 1]
                out["alpha"][i, lay, k - 1, :k] = np.sort(slots / slots.sum())[::-1]
            bar.update(len(chunk))
        bar.close()
        elapsed = time.perf_counter() - started
        for arr in out.values():
            arr.flush()
        del out
        manifest = {
            "format": FORMAT_VERSION,
            "key": key,
            "model": model_id,
            "corpus_hash": corpus.content_hash,
            "settings": dataclasses.asdict(settings),
            "device": str(lm.device),
            "dtype": str(next(lm.model.parameters()).dtype),
            "sequences": total,
            "seconds": round(elapsed, 3),
            "pairs": len(pair_jobs),
            "pair_seconds": round(pair_seconds, 3),
            "pages": len(page_jobs),
            "page_seconds": round(elapsed - pair_seconds, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        manifest_tmp = tmp / "manifest.json.tmp"
        manifest_tmp.write_text(json.dumps(manifest, indent=2))
        os.replace(manifest_tmp, tmp / "manifest.json")
        if final.exists() and not (final / "manifest.json").is_file():
            shutil.rmtree(final)  # not a bank: no manifest (left by hand or a crash)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / "manifest.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # a concurrent build won the race
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


RELEVANCE_MAPS = ("logistic", "max")


def map_relevance(raw: NDArray, how: str = "logistic") -> NDArray[np.float64]:
    """Map ``r_raw [Q, C]`` into [0, 1] per query (see the module docstring)."""
    raw = np.asarray(raw, dtype=np.float64)
    if how == "max":
        return raw / raw.max(axis=1, keepdims=True)
    if how == "logistic":
        z = (raw - raw.mean(axis=1, keepdims=True)) / np.maximum(
            raw.std(axis=1, keepdims=True), 1e-12
        )
        return 1.0 / (1.0 + np.exp(-z))
    raise ValueError(
        f"unknown relevance map {how!r}; known: {', '.join(RELEVANCE_MAPS)}"
    )


def validate_bank(bank: Bank, corpus: Corpus, lm: Any) -> dict[str, Any]:
    """Precision@1 at picking an own-vertical candidate: r vs a cosine baseline.

    For every query of the bank, the top candidate of its set by ``r_raw`` (any
    monotone map of it has the same argmax) and by the cosine of mean-pooled
    embeddings (query and candidate encoded separately) count as a hit when the
    candidate is of the query's vertical.
    """
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


def _remove_stale_temps(root: Path, older_than_s: float = 3600.0) -> None:
    """Remove temp folders of builds that died more than an hour ago."""
    now = time.time()
    for entry in root.glob(".tmp-*"):
        try:
            if now - entry.stat().st_mtime > older_than_s:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def _progress(total: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, disable=not enabled, desc=desc, unit="seq", file=sys.stderr
    )
