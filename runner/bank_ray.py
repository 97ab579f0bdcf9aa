"""Building an attention bank across a Ray cluster (``valuations build --address``).

The driver does what :func:`~attn_env.valuations.bank_build.build_bank` does
before and after the model runs: the key (from the driver's model identity,
the corpus hash and the settings), the reuse of an existing or shipped bank,
the seeded query rows, candidate sets and page layouts
(:func:`~attn_env.valuations.bank_build.draw_layout`, drawn once), and the
write into a temp folder renamed into place after the manifest
(:func:`~attn_env.valuations.bank_build.write_bank`). In between, the query
rows are split into ``chunks`` contiguous parts and each part is one Ray task
that loads the model on its worker (from the package installed there, local
files only; on the worker's GPU when it has one) and returns its rows
(:func:`~attn_env.valuations.bank_build.compute_rows`).

So the bank has the same key, candidate sets and layouts as a single-process
build; its numbers agree up to float rounding (a row shares its forward passes
with other rows of its chunk, and each chunk computes the neutral-query
calibration of ``lift`` for its own candidates). The manifest carries the same
fields plus ``"ray": {"address", "chunks"}`` (not part of the key); its
``seconds`` is the driver's wall clock from the first task submitted to the
last result (model loads included), ``pair_seconds`` and ``page_seconds`` are
summed over the chunks (worker time).

A worker whose model files differ from the driver's (another install) fails its
chunk rather than write numbers of another model under this key. A failed
chunk ends the build in one line naming it; Ray started here is shut down
whatever happens. ``ray`` is imported when a build runs, never at import.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from attn_env.checks import check_device
from attn_env.errors import ConfigError, UserError
from attn_env.valuations.bank_build import (
    Layout,
    Rows,
    _progress,
    _remove_stale_temps,
    check_batch_size,
    compute_rows,
    count_sequences,
    draw_layout,
    existing_bank,
    write_bank,
)
from attn_env.valuations.bank_settings import BankSettings, bank_key
from attn_env.valuations.cache import bank_root
from attn_env.valuations.corpus_io import Corpus

__all__ = [
    "RAY_HINT",
    "build_bank_on_ray",
    "build_config_bank",
    "search_day_inputs",
    "split_rows",
]

RAY_HINT = (
    'Ray is not installed; run `pip install -e ".[rllib]"` (or `pip install ray`)'
)


def _import_ray() -> Any:
    """``ray`` itself (no RLlib needed to build a bank), else one line."""
    try:
        import ray
    except ImportError:
        raise UserError(RAY_HINT) from None
    return ray


def split_rows(n_rows: int, chunks: int) -> list[np.ndarray]:
    """``chunks`` contiguous, non-empty parts of ``range(n_rows)`` (sizes differ by
    at most one); fewer when there are fewer rows than chunks."""
    return [
        part
        for part in np.array_split(np.arange(n_rows), min(chunks, n_rows))
        if len(part)
    ]


@functools.lru_cache(maxsize=2)
def _worker_model(model_dir: str | None, device: str) -> Any:
    """The model a worker process loaded, kept for its next chunk (Ray reuses
    worker processes; loading MiniLM again would cost about a second a chunk)."""
    from attn_env.valuations.model import load_model

    return load_model(model_dir, device=device)


def _chunk_task(
    settings: BankSettings,
    corpus: Corpus,
    layout: Layout,
    rows: np.ndarray,
    model_dir: str | None,
    device: str,
    model_id: str,
    batch_size: int,
) -> tuple[Rows, str, str]:
    """One chunk on a Ray worker: its rows, the device and dtype they ran on."""
    lm = _worker_model(model_dir, device)
    if lm.identity != model_id:
        raise RuntimeError(
            f"the model on worker {socket.gethostname()} is not the driver's (other "
            "files or bytes); install the same attn-market and model on every node"
        )
    done = compute_rows(lm, settings, corpus, layout, rows, batch_size)
    return done, str(lm.device), str(next(lm.model.parameters()).dtype)


def _plan(ray: Any, device: str, chunks: int | None) -> tuple[int, float]:
    """``(chunks, GPUs per task)``: by default one chunk per GPU of the cluster
    (``device`` auto or cuda) or else per CPU."""
    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    if device.startswith("cuda") and gpus == 0:
        raise UserError(
            f"device {device!r} asked for but the Ray cluster has no GPU; "
            "use --device auto or cpu"
        )
    per_task = 1.0 if gpus > 0 and device != "cpu" else 0.0
    if chunks is None:
        chunks = max(1, int(gpus if per_task else cpus))
    return chunks, per_task


def _one_line(err: BaseException) -> str:
    """The cause of a Ray error in one line (a task's own exception when known)."""
    cause = getattr(err, "cause", None) or err
    text = " ".join(str(cause).split())
    if isinstance(cause, BaseException) and type(cause).__name__ not in text[:60]:
        text = f"{type(cause).__name__}: {text}"
    return text[:300]


def build_bank_on_ray(
    settings: BankSettings,
    corpus: Corpus,
    *,
    address: str | None = None,
    chunks: int | None = None,
    bank_dir: str | Path | None = None,
    model_dir: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 64,
    progress: bool = True,
) -> Path:
    """Compute a bank with its query rows split over Ray tasks; return its folder.

    Args:
        settings: what to compute (every field goes into the key).
        corpus: queries and candidates (sent once to the cluster's object store).
        address: ``HOST:PORT`` of a running Ray cluster (probed first, one line
            when nothing answers), ``auto``, or ``None``/``local``: a local Ray
            of ``chunks`` CPUs (default: this machine's). ``RAY_ADDRESS`` is
            used when ``None``.
        chunks: tasks the query rows are split into (default: one per GPU of
            the cluster, else one per CPU).
        bank_dir: parent folder of banks (default
            :func:`~attn_env.valuations.cache.default_bank_dir`).
        model_dir: the model folder, the same path on every node (default: the
            MiniLM installed with the package on each node).
        device: ``auto`` (a GPU per task when the cluster has GPUs), ``cpu`` or
            ``cuda``.
        batch_size: sequences per forward pass on a worker.
        progress: a progress bar on stderr (when it is a terminal), per chunk.

    Returns:
        The bank folder ``<bank_dir>/<key>`` (an existing or shipped bank of
        the key is returned as it is, without starting Ray).

    Raises:
        UserError: Ray missing, an address that is no Ray cluster, or a chunk
            that failed (naming it and its query rows).
        ConfigError: a bad ``chunks`` or ``batch_size``.
    """
    from attn_env.valuations.model import model_identity
    from training.ray_start import init_ray

    check_batch_size(batch_size)
    check_device(device)
    if chunks is not None and (
        isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1
    ):
        raise ConfigError(f"chunks must be an integer >= 1, got {chunks!r}")
    model_id = model_identity(model_dir)
    root = bank_root(bank_dir)
    key = bank_key(settings, model_id, corpus.content_hash)
    found = existing_bank(root, key)
    if found is not None:
        return found
    root.mkdir(parents=True, exist_ok=True)  # a bad bank_dir fails before Ray
    ray = _import_ray()
    started_here = not ray.is_initialized()
    local_cpus = chunks if chunks is not None else (os.cpu_count() or 2)
    try:
        init_ray(ray, address, runners=max(1, local_cpus - 1))
        _remove_stale_temps(root)
        layout = draw_layout(settings, corpus)
        n_q = len(layout.queries)
        n_chunks, gpus_per_task = _plan(ray, device, chunks)
        parts = split_rows(n_q, n_chunks)
        where = address or os.environ.get("RAY_ADDRESS") or "local"
        relevance, alpha, seconds, devices, pair_s, page_s = _run_chunks(
            ray,
            parts,
            (settings, corpus, layout),
            model_dir,
            device,
            model_id,
            batch_size,
            gpus_per_task,
            progress,
            key,
        )
        pairs, pages = count_sequences(settings, n_q)
        manifest = {
            "model": model_id,
            "corpus_hash": corpus.content_hash,
            "settings": settings.to_params(),
            "device": ",".join(sorted({d for d, _ in devices})),
            "dtype": ",".join(sorted({t for _, t in devices})),
            "sequences": pairs + pages,
            "seconds": round(seconds, 3),
            "pairs": pairs,
            "pair_seconds": round(pair_s, 3),
            "pages": pages,
            "page_seconds": round(page_s, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "ray": {"address": where, "chunks": len(parts)},
        }
        return write_bank(root, key, layout, relevance, alpha, manifest)
    finally:
        if started_here and ray.is_initialized():
            ray.shutdown()


def _run_chunks(
    ray: Any,
    parts: list[np.ndarray],
    shared: tuple[BankSettings, Corpus, Layout],
    model_dir: str | Path | None,
    device: str,
    model_id: str,
    batch_size: int,
    gpus_per_task: float,
    progress: bool,
    key: str,
) -> tuple[np.ndarray, np.ndarray, float, list[tuple[str, str]], float, float]:
    """Submit one task per part, gather the rows as they come (one line on the
    first failure, the other tasks cancelled)."""
    settings, _, layout = shared
    n_q, c = layout.candidates.shape
    _, p, kmax = layout.page_candidates.shape
    relevance = np.empty((n_q, c), dtype=np.float32)
    alpha = np.empty((n_q, p, kmax, kmax), dtype=np.float32)
    task = ray.remote(num_cpus=1, num_gpus=gpus_per_task)(_chunk_task)
    refs = [ray.put(x) for x in shared]
    folder = None if model_dir is None else str(model_dir)
    started = time.perf_counter()
    pending = {
        task.remote(*refs, rows, folder, device, model_id, batch_size): k
        for k, rows in enumerate(parts)
    }
    total = sum(sum(count_sequences(settings, len(rows))) for rows in parts)
    bar = _progress(
        total, progress, f"attention bank {key[:8]} on Ray, {len(parts)} chunks"
    )
    devices, pair_s, page_s = [], 0.0, 0.0
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                k = pending.pop(ref)
                rows = parts[k]
                try:
                    done, dev, dtype = ray.get(ref)
                except ray.exceptions.RayError as err:
                    raise UserError(
                        f"bank chunk {k + 1} of {len(parts)} (query rows "
                        f"{rows[0]}-{rows[-1]}) failed on Ray: {_one_line(err)}"
                    ) from None
                relevance[rows] = done.relevance_raw
                alpha[rows] = done.alpha
                devices.append((dev, dtype))
                pair_s += done.pair_seconds
                page_s += done.page_seconds
                bar.update(sum(count_sequences(settings, len(rows))))
    finally:
        bar.close()
        for ref in pending:
            ray.cancel(ref, force=True)
    sys.stderr.flush()
    return relevance, alpha, time.perf_counter() - started, devices, pair_s, page_s


def search_day_inputs(config: str | Path) -> tuple[BankSettings, Corpus] | None:
    """The bank settings and corpus of a ``search_day`` scenario config, or
    ``None`` when ``config`` names no scenario (an experiment config).

    The settings are those of the shipped search-day bank
    (:func:`~attn_env.valuations.shipped_banks.shipped_entry`); the corpus is
    the config's ``data`` folder (``queries.jsonl`` + ``ads.jsonl``, the bank
    the scenario builds for it) or, without ``data``, the shipped traffic,
    whose bank ships prebuilt. Another scenario is refused in one line.
    """
    from attn_env.valuations.corpus_io import load_corpus
    from attn_env.valuations.shipped_banks import load_named_corpus, shipped_entry
    from runner.scenarios import read_scenario

    found = read_scenario(config)
    if found is None:
        return None
    name, cfg = found
    if name != "search_day":
        raise UserError(
            f"{config}: scenario {name!r} has no attention bank; valuations build "
            "takes an experiment config (env.valuation_params) or a search_day "
            "scenario config"
        )
    corpus_name, settings = shipped_entry("search_day")
    if cfg.data is not None:
        return settings, load_corpus(
            Path(cfg.data).expanduser(), candidates="ads.jsonl"
        )
    return settings, load_named_corpus(corpus_name)


def build_config_bank(
    config: str | Path,
    *,
    address: str | None = None,
    chunks: int | None = None,
    device: str | None = None,
    bank_dir: str | Path | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    verbose: bool = False,
) -> Path:
    """The bank of ``config`` (experiment or ``search_day`` scenario config),
    built on Ray at ``address`` when given, else in this process.

    An experiment config's ``env.valuation_params`` give the settings and the
    source options (``corpus``, ``model_dir``, ``bank_dir``, ``device``,
    ``batch_size``; a ``bank_path`` is returned as given); the arguments here
    override them (an experiment config without ``address`` goes through
    :func:`runner.valuations.bank_for`, as before). ``chunks`` needs ``address``.
    """
    from attn_env.valuations.bank_build import build_bank
    from attn_env.valuations.corpus_io import load_corpus
    from runner.valuations import bank_for, settings_of

    if chunks is not None and address is None:
        raise UserError(
            "--chunks splits a build over Ray tasks; give --address too "
            "(HOST:PORT of a cluster, or local for a Ray on this machine)"
        )
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    scenario = search_day_inputs(config)
    if scenario is None and address is None:  # as before Ray came in
        return bank_for(str(config), device, bank_dir, batch_size, progress, verbose)[0]
    if scenario is not None:
        (settings, corpus), opts = scenario, {}
    else:
        settings, opts = settings_of(str(config))
        if "bank_path" in opts:
            return Path(opts["bank_path"])
        corpus = load_corpus(opts.get("corpus"))
    named = device is not None
    device = device or opts.get("device", "auto")
    check_device(device, "--device" if named else "valuation_params.device")
    common = {
        "bank_dir": bank_dir or opts.get("bank_dir"),
        "model_dir": opts.get("model_dir"),
        "device": device,
        "batch_size": batch_size
        if batch_size is not None
        else opts.get("batch_size", 64),
        "progress": progress,
    }
    if address is None:
        return build_bank(settings, corpus, verbose=verbose, **common)
    return build_bank_on_ray(settings, corpus, address=address, chunks=chunks, **common)
