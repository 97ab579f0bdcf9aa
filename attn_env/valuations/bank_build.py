"""Building an attention bank: candidate sets, page layouts, r_raw and alpha.

One build draws (seeded by ``settings.seed``) the query subset, each query's
candidate set and its page layouts, runs the model over every (query,
candidate) pair and every page of K >= 2 slots, and stores the arrays in the
layout documented in :mod:`attn_env.valuations.bank`. The three steps are
functions so that a build can be split: :func:`draw_layout` (the seeded
draws), :func:`compute_rows` (the model over some query rows) and
:func:`write_bank` (the arrays and manifest, published atomically);
``build_bank`` runs all rows in this process and ``runner.bank_ray`` spreads
them over Ray tasks.

A build writes into ``<bank_dir>/.tmp-<key>-*`` (arrays first, then
``manifest.json``) and renames the whole folder into place, so an interrupted
build leaves no bank; a stale temp folder is removed by the next build. The
model code is imported when a build runs, never at import time, so that
importing the package does not import torch.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from attn_env.checks import check_device
from attn_env.errors import ConfigError
from attn_env.fileio import atomic_write_text, fsync_dir, umask_mode
from attn_env.valuations.bank_settings import (
    FORMAT_VERSION,
    BankSettings,
    bank_key,
)
from attn_env.valuations.cache import bank_root, shipped_bank
from attn_env.valuations.corpus_io import Corpus

__all__ = [
    "Layout",
    "Rows",
    "build_bank",
    "check_batch_size",
    "compute_rows",
    "count_sequences",
    "draw_layout",
    "existing_bank",
    "write_bank",
]


def _candidate_sets(
    settings: BankSettings, corpus: Corpus, rng: np.random.Generator
) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.bool_]]:
    """Seeded query subset and per-query candidate sets (own vertical + others).

    Args:
        settings: ``n_queries``, ``candidates_per_query`` and ``own_fraction``.
        corpus: the queries and candidates to draw from.
        rng: the build's generator (its draws here come first).

    Returns:
        ``queries [Q]``, ``candidates [Q, C]`` and ``own [Q, C]``.

    Raises:
        ValueError: when a query's vertical (or the others) has too few
            candidates.
    """
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
            raise ConfigError(
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


def _open_arrays(
    folder: Path, n_q: int, c: int, p: int, kmax: int
) -> dict[str, np.memmap]:
    """Create the bank's ``.npy`` files in ``folder``, memory-mapped for writing."""

    def mm(name: str, dtype: Any, shape: tuple[int, ...]) -> np.memmap:
        return np.lib.format.open_memmap(folder / f"{name}.npy", "w+", dtype, shape)

    return {
        "queries": mm("queries", np.int32, (n_q,)),
        "candidates": mm("candidates", np.int32, (n_q, c)),
        "own": mm("own", np.bool_, (n_q, c)),
        "relevance_raw": mm("relevance_raw", np.float32, (n_q, c)),
        "page_candidates": mm("page_candidates", np.int32, (n_q, p, kmax)),
        "alpha": mm("alpha", np.float32, (n_q, p, kmax, kmax)),
    }


def _publish(tmp: Path, final: Path) -> None:
    """Rename the finished temp folder ``tmp`` to ``final``, atomically.

    The folder gets the mode ``mkdir`` would have given it (``mkdtemp`` leaves
    ``0o700``). A folder at ``final`` without a manifest (left by hand or a
    crash) is replaced; a complete bank there (a concurrent build that won the
    race) is kept and ``tmp`` removed.
    """
    os.chmod(tmp, umask_mode(0o777))
    fsync_dir(tmp)
    if final.exists() and not (final / "manifest.json").is_file():
        shutil.rmtree(final)  # not a bank: no manifest (left by hand or a crash)
    try:
        os.replace(tmp, final)
    except OSError:
        if not (final / "manifest.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # a concurrent build won the race
        return
    fsync_dir(final.parent)


class Layout(NamedTuple):
    """What a build draws from the seed: query rows, candidate sets, page layouts."""

    queries: NDArray[np.int32]
    "Corpus index of each query ``[Q]``."
    candidates: NDArray[np.int32]
    "Corpus index of each query's candidates ``[Q, C]``."
    own: NDArray[np.bool_]
    "Candidate of the query's own vertical ``[Q, C]``."
    page_candidates: NDArray[np.int32]
    "Slot fill of each page layout ``[Q, P, Kmax]``."


class Rows(NamedTuple):
    """The computed arrays of some query rows (:func:`compute_rows`)."""

    relevance_raw: NDArray[np.float32]
    "``r_raw`` of each (row, candidate) ``[R, C]``."
    alpha: NDArray[np.float32]
    "Sorted slot attention of each row's pages ``[R, P, Kmax, Kmax]``."
    pair_seconds: float
    "Seconds spent on the pairs."
    page_seconds: float
    "Seconds spent on the pages."


def draw_layout(settings: BankSettings, corpus: Corpus) -> Layout:
    """The query subset, candidate sets and page layouts seeded by ``settings.seed``.

    The same on every machine for the same settings and corpus, so a build
    split over processes draws it once and ships the rows to compute.
    """
    rng = np.random.default_rng(settings.seed)
    queries, cands, own = _candidate_sets(settings, corpus, rng)
    n_q = cands.shape[0]
    p, kmax = settings.pages, settings.max_slots
    page_cands = np.stack(
        [
            np.stack([rng.permutation(cands[i])[:kmax] for _ in range(p)])
            for i in range(n_q)
        ]
    ).astype(np.int32)
    return Layout(queries, cands, own, page_cands)


def count_sequences(settings: BankSettings, n_rows: int) -> tuple[int, int]:
    """``(pairs, pages)`` a build runs for ``n_rows`` query rows (pages: K >= 2)."""
    c, p, kmax = settings.candidates_per_query, settings.pages, settings.max_slots
    return n_rows * c, n_rows * p * max(kmax - 1, 0)


def compute_rows(
    lm: Any,
    settings: BankSettings,
    corpus: Corpus,
    layout: Layout,
    rows: NDArray[np.integer] | range,
    batch_size: int = 64,
    bar: Any = None,
) -> Rows:
    """``r_raw`` and alpha of the query ``rows`` of ``layout`` (in that order).

    Pairs first (``batch_size`` pages per forward pass, each candidate's neutral
    page once per call), then the pages with K >= 2 slots grouped by K so a
    batch holds sequences of similar length. Row ``i`` of the result depends
    only on ``layout`` row ``rows[i]`` (up to float rounding of the batch it
    shares), so rows computed apart and stacked give the bank.

    Args:
        lm: a loaded model (:class:`~attn_env.valuations.model.LoadedModel`).
        settings: the bank settings (token limits, attention spec).
        corpus: the texts ``layout`` indexes.
        layout: from :func:`draw_layout`.
        rows: query rows (indices into ``layout``) to compute.
        batch_size: sequences per forward pass.
        bar: a progress bar to ``update(n)`` after each batch, or ``None``.

    Returns:
        The rows' arrays (alpha with ``alpha[:, :, 0, 0] = 1``, zeros above
        each K's first K entries) and the seconds each part took.
    """
    from attn_env.valuations.lift import pair_relevance
    from attn_env.valuations.model import (
        assemble_pages,
        page_attention,
        segment_mass,
        tokenize,
    )

    rows = np.asarray(rows, dtype=np.int64)
    n_r = len(rows)
    cands, page_cands = layout.candidates[rows], layout.page_candidates[rows]
    c = cands.shape[1]
    p, kmax = settings.pages, settings.max_slots
    q_tok = tokenize(
        lm.tokenizer,
        [corpus.query_texts[q] for q in layout.queries[rows]],
        settings.max_query_tokens,
    )
    needed = np.unique(cands)
    c_tok_list = tokenize(
        lm.tokenizer,
        [corpus.cand_texts[j] for j in needed],
        settings.max_candidate_tokens,
    )
    c_tok = dict(zip(needed.tolist(), c_tok_list, strict=True))
    spec = settings.attention
    relevance = np.empty((n_r, c), dtype=np.float32)
    alpha = np.zeros((n_r, p, kmax, kmax), dtype=np.float32)
    alpha[:, :, 0, 0] = 1.0

    # Jobs: (query row, index) -- pairs first, then pages with K >= 2.
    pair_jobs = [(i, j) for i in range(n_r) for j in range(c)]
    page_jobs = [
        (i, lay, k) for i in range(n_r) for lay in range(p) for k in range(2, kmax + 1)
    ]
    started = time.perf_counter()
    neutral: dict = {}  # lift's neutral-query masses, once per candidate
    for start in range(0, len(pair_jobs), batch_size):
        chunk = pair_jobs[start : start + batch_size]
        score = pair_relevance(
            lm,
            [q_tok[i] for i, _ in chunk],
            [c_tok[int(cands[i, j])] for i, j in chunk],
            spec,
            batch_size,
            neutral,
        )
        ii, jj = np.asarray(chunk).T
        relevance[ii, jj] = score
        if bar is not None:
            bar.update(len(chunk))
    pair_seconds = time.perf_counter() - started
    # Pages grouped by K so each batch holds sequences of similar length.
    page_jobs.sort(key=lambda job: job[2])
    for start in range(0, len(page_jobs), batch_size):
        chunk = page_jobs[start : start + batch_size]
        page = assemble_pages(
            lm.tokenizer,
            [q_tok[i] for i, _, _ in chunk],
            [[c_tok[int(x)] for x in page_cands[i, lay, :k]] for i, lay, k in chunk],
        )
        kk = max(k for _, _, k in chunk)
        mass = segment_mass(page_attention(lm, page, spec), page.segment, kk + 1, spec)
        for row, (i, lay, k) in enumerate(chunk):
            slots = mass[row, 1 : k + 1]
            alpha[i, lay, k - 1, :k] = np.sort(slots / slots.sum())[::-1]
        if bar is not None:
            bar.update(len(chunk))
    page_seconds = time.perf_counter() - started - pair_seconds
    return Rows(relevance, alpha, pair_seconds, page_seconds)


def check_batch_size(batch_size: Any) -> None:
    """One ``ConfigError`` line unless ``batch_size`` is an integer >= 1."""
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int | np.integer)
        or batch_size < 1
    ):
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")


def existing_bank(root: Path, key: str) -> Path | None:
    """The complete bank of ``key`` in ``root``, else the shipped one, else ``None``."""
    final = root / key
    if (final / "manifest.json").is_file():
        return final
    return shipped_bank(key)


def write_bank(
    root: Path,
    key: str,
    layout: Layout,
    relevance_raw: NDArray[np.float32],
    alpha: NDArray[np.float32],
    manifest: dict[str, Any],
) -> Path:
    """Store a computed bank as ``<root>/<key>`` and return that folder.

    Arrays go into ``<root>/.tmp-<key>-<pid>-*``, then ``manifest.json``
    (``format`` and ``key`` first, then ``manifest``'s fields), then the
    folder is renamed into place (:func:`_publish`); on any error the temp
    folder is removed, so no half bank is ever seen.
    """
    n_q, c = layout.candidates.shape
    _, p, kmax = layout.page_candidates.shape
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-{os.getpid()}-", dir=root))
    try:
        out = _open_arrays(tmp, n_q, c, p, kmax)
        out["queries"][:] = layout.queries
        out["candidates"][:] = layout.candidates
        out["own"][:] = layout.own
        out["page_candidates"][:] = layout.page_candidates
        out["relevance_raw"][:] = relevance_raw
        out["alpha"][:] = alpha
        for arr in out.values():
            arr.flush()
        del out
        manifest = {"format": FORMAT_VERSION, "key": key, **manifest}
        atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=2))
        _publish(tmp, root / key)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root / key


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
    verbose: bool = False,
) -> Path:
    """Compute r and alpha and store them as a bank; return its folder.

    An existing complete bank with the same key is reused as it is: one in
    ``bank_dir``, else one shipped in the package
    (:mod:`~attn_env.valuations.shipped_banks`). Every query row is computed
    in this process (:func:`compute_rows`); ``runner.bank_ray`` splits the
    rows over a Ray cluster instead.

    Args:
        settings: what to compute (every field goes into the key).
        corpus: queries and candidates.
        lm: a :class:`~attn_env.valuations.model.LoadedModel`; default: load
            ``model_dir`` (the shipped MiniLM when ``None``) on ``device``.
        bank_dir: parent folder of banks (default
            :func:`~attn_env.valuations.bank_settings.default_bank_dir`).
        model_dir: a local BERT-like model folder, when ``lm`` is ``None``.
        device: where to load the model, when ``lm`` is ``None``.
        batch_size: sequences per forward pass.
        progress: show a tqdm progress bar on stderr (when it is a terminal).
        verbose: let transformers log while loading the model (quiet by default).

    Returns:
        The bank folder ``<bank_dir>/<key>``.
    """
    from attn_env.valuations.model import load_model, model_identity

    check_batch_size(batch_size)
    check_device(device)
    model_id = lm.identity if lm is not None else model_identity(model_dir)
    root = bank_root(bank_dir)
    key = bank_key(settings, model_id, corpus.content_hash)
    found = existing_bank(root, key)
    if found is not None:
        return found
    root.mkdir(parents=True, exist_ok=True)  # a bad bank_dir fails before the model
    if lm is None:
        lm = load_model(model_dir, device=device, verbose=verbose)
    _remove_stale_temps(root)

    layout = draw_layout(settings, corpus)
    n_q = len(layout.queries)
    pairs, pages = count_sequences(settings, n_q)
    bar = _progress(pairs + pages, progress, f"attention bank {key[:8]} on {lm.device}")
    done = compute_rows(lm, settings, corpus, layout, range(n_q), batch_size, bar)
    bar.close()
    elapsed = done.pair_seconds + done.page_seconds
    manifest = {
        "model": model_id,
        "corpus_hash": corpus.content_hash,
        "settings": settings.to_params(),
        "device": str(lm.device),
        "dtype": str(next(lm.model.parameters()).dtype),
        "sequences": pairs + pages,
        "seconds": round(elapsed, 3),
        "pairs": pairs,
        "pair_seconds": round(done.pair_seconds, 3),
        "pages": pages,
        "page_seconds": round(done.page_seconds, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return write_bank(root, key, layout, done.relevance_raw, done.alpha, manifest)


def _remove_stale_temps(root: Path, older_than_s: float = 3600.0) -> None:
    """Remove temp folders of builds that died.

    A temp folder is named ``.tmp-<key>-<pid>-<random>``: it is stale as soon as
    the process that made it is gone (a killed build is cleaned up by the next
    one, not an hour later). A folder whose owner cannot be told (another
    naming, or a pid of another machine on a shared disk that happens to be
    alive here) is removed once it is older than ``older_than_s``.
    """
    now = time.time()
    for entry in root.glob(".tmp-*"):
        try:
            if (
                not _owner_alive(entry.name)
                or now - entry.stat().st_mtime > older_than_s
            ):
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def _owner_alive(name: str) -> bool:
    """Whether the pid in a temp folder's name (``.tmp-<key>-<pid>-<random>``) runs.

    Names without a pid count as alive (the age rule decides for them).
    """
    parts = name.split("-")
    if len(parts) < 4 or not parts[-2].isdigit():
        return True
    try:
        os.kill(int(parts[-2]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists but is not ours, or not a pid at all
    return True


def _progress(total: int, enabled: bool, desc: str) -> Any:
    """A tqdm bar of ``total`` sequences on stderr (when ``enabled`` and a terminal)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        disable=None if enabled else True,
        desc=desc,
        unit="seq",
        file=sys.stderr,
    )
