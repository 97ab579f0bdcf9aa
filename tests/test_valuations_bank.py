"""The attention path on a tiny random BERT with the real tokenizer: maps, bank, source.

A 2-layer, 2-head BERT (hidden size 32) randomly initialised and saved to a temp
folder stands in for MiniLM, so every test here is fast; the real model is in
``test_valuations_real.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

os.environ["HF_HUB_OFFLINE"] = "1"

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from attn_env.valuations import Draw, ValuationSource, make_source  # noqa: E402
from attn_env.valuations.bank import (  # noqa: E402
    BankSettings,
    bank_key,
    build_bank,
    find_bank,
    load_bank,
    load_corpus,
    map_relevance,
)
from attn_env.valuations.lift import pair_relevance  # noqa: E402
from attn_env.valuations.model import (  # noqa: E402
    AttentionSpec,
    assemble_pages,
    load_model,
    page_attention,
    pair_score,
    segment_mass,
    tokenize,
)

VERTICALS = {
    "shoes": ("running shoes", "trail sneakers", "hiking boots", "sandals"),
    "tax": ("tax return", "tax refund", "bookkeeping", "retirement account"),
    "garden": ("tomato plants", "lawn seed", "rose bushes", "compost bin"),
}
SETTINGS = {
    "layers": [2],  # the tiny model has 2 layers (MiniLM's default is [3])
    "lift_heads": [[1, 1], [2, 2]],  # and 2 heads per layer
    "n_queries": None,
    "candidates_per_query": 6,
    "own_fraction": 0.5,
    "pages": 2,
    "max_slots": 3,
    "max_query_tokens": 8,
    "max_candidate_tokens": 12,
}


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """9 queries and 24 candidates over 3 verticals."""
    folder = tmp_path_factory.mktemp("corpus")
    queries, cands = [], []
    for v, products in VERTICALS.items():
        for k, p in enumerate(products[:3]):
            queries.append(
                {"id": f"q-{v}-{k}", "text": f"best {p} to buy", "vertical": v}
            )
        for k in range(8):
            p = products[k % len(products)]
            text = f"ad {k}: great {p} on sale, {10 + k} percent off"
            cands.append({"id": f"c-{v}-{k}", "text": text, "vertical": v})
    for name, rows in (("queries.jsonl", queries), ("candidates.jsonl", cands)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def bank_path(tiny, corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("banks")
    return build_bank(
        BankSettings(**SETTINGS),
        load_corpus(corpus_dir),
        tiny,
        bank_dir=root,
        batch_size=16,
        progress=False,
    )


# ---------------------------------------------------------------------- import


def test_importing_the_package_loads_neither_torch_nor_transformers() -> None:
    code = (
        "import sys, attn_env, attn_env.valuations, attn_env.valuations.bank, "
        "attn_env.valuations.attention, attn_market.commands.valuations; "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


# ---------------------------------------------------------------------- maps


def test_pages_put_every_token_in_its_segment(tiny) -> None:
    tok = tiny.tokenizer
    q, c1, c2 = tokenize(tok, ["running shoes", "red sneaker", "tax help now"], 8)
    page = assemble_pages(tok, [q, q], [[c1, c2], [c1]])
    cls, sep = tok.cls_token_id, tok.sep_token_id
    row = page.input_ids[0].tolist()
    assert row == [cls, *q, sep, *c1, sep, *c2, sep]
    seg = page.segment[0].tolist()
    assert seg == [-1] + [0] * len(q) + [-1] + [1] * len(c1) + [-1] + [2] * len(c2) + [
        -1
    ]
    # the shorter page is padded, its padding masked out
    short = len(q) + len(c1) + 3
    assert (page.segment[1, short:] == -2).all()
    assert page.mask[1].sum() == short
    assert (page.token_type[0, : len(q) + 2] == 0).all()
    assert (page.token_type[0, len(q) + 2 :] == 1).all()


@pytest.mark.parametrize("spec", [AttentionSpec(1), AttentionSpec(2, "max")])
def test_attention_rows_sum_to_one(tiny, spec: AttentionSpec) -> None:
    tok = tiny.tokenizer
    q, c1, c2 = tokenize(tok, ["cheap flights", "fly to rome now", "tax advice"], 8)
    page = assemble_pages(tok, [q, q], [[c1, c2], [c2]])
    attn = page_attention(tiny, page, spec).numpy()
    real = page.mask.astype(bool)
    rows = attn[real]  # rows of real tokens
    np.testing.assert_allclose(rows.sum(axis=-1), 1.0, atol=1e-5)
    # padding columns receive (almost) nothing
    assert attn[1][:, ~real[1]].max() < 1e-6


def _reference_maps(tiny, page, spec: AttentionSpec) -> list[np.ndarray]:
    """Per page, the docstring's map A (heads aggregated, layers averaged), raw."""
    with torch.inference_mode():
        out = tiny.model(
            input_ids=torch.as_tensor(page.input_ids),
            token_type_ids=torch.as_tensor(page.token_type),
            attention_mask=torch.as_tensor(page.mask),
            output_attentions=True,
        )
    maps = [out.attentions[i].numpy() for i in spec.layer_indices(2)]
    return [
        np.mean(
            [m[b].mean(0) if spec.heads == "mean" else m[b].max(0) for m in maps],
            axis=0,
        )
        for b in range(page.input_ids.shape[0])
    ]


def _reference_mass(tiny, page, spec: AttentionSpec, n_seg: int) -> np.ndarray:
    """Loop-by-loop version of the docstring's formula, from raw head maps."""
    res = np.zeros((page.input_ids.shape[0], n_seg))
    maps = _reference_maps(tiny, page, spec)
    for b, seg in enumerate(page.segment):
        a = maps[b]
        src = (
            [t for t in range(len(seg)) if seg[t] == 0]
            if spec.source == "query"
            else [0]
        )
        for t in src:
            row = np.where(seg >= 0, a[t], 0.0)
            row = row / row.sum()
            for s in range(n_seg):
                res[b, s] += row[seg == s].sum() / len(src)
    return res


@pytest.mark.parametrize(
    "spec",
    [
        AttentionSpec(1),
        AttentionSpec(2),
        AttentionSpec(1, "max"),
        AttentionSpec(2, source="cls"),
    ],
)
def test_segment_mass_matches_the_formula(tiny, spec: AttentionSpec) -> None:
    tok = tiny.tokenizer
    q, c1, c2, c3 = tokenize(tok, ["garden hose", "green hose", "buy boots", "tax"], 8)
    page = assemble_pages(tok, [q, q], [[c1, c2, c3], [c3, c1]])
    mass = segment_mass(page_attention(tiny, page, spec), page.segment, 4, spec)
    np.testing.assert_allclose(mass, _reference_mass(tiny, page, spec, 4), atol=1e-5)
    np.testing.assert_allclose(mass.sum(axis=1), 1.0, atol=1e-6)
    assert mass[1, 3] == 0.0  # the second page has no third slot


@pytest.mark.parametrize(
    "spec",
    [
        AttentionSpec([2], score="maxsim"),
        AttentionSpec([1, 2], "mean", score="maxsim"),
        AttentionSpec(1, source="cls", score="maxsim"),
    ],
)
def test_maxsim_score_matches_the_formula(tiny, spec: AttentionSpec) -> None:
    """r_raw = mean over source rows of the best candidate token's share."""
    tok = tiny.tokenizer
    q, c1, c2 = tokenize(tok, ["garden hose deals", "green hose", "buy tax boots"], 8)
    page = assemble_pages(tok, [q, q], [[c1], [c2]])
    got = pair_score(page_attention(tiny, page, spec), page.segment, spec)
    maps = _reference_maps(tiny, page, spec)
    for b, seg in enumerate(page.segment):
        a = maps[b]
        src = np.flatnonzero(seg == 0) if spec.source == "query" else [0]
        best = []
        for t in src:
            row = np.where(seg >= 0, a[t], 0.0)
            best.append((row / row.sum())[seg == 1].max())
        assert got[b] == pytest.approx(np.mean(best), abs=1e-6)
    mass = AttentionSpec(spec.layers, spec.heads, spec.source, score="mass")
    np.testing.assert_allclose(
        pair_score(page_attention(tiny, page, mass), page.segment, mass),
        segment_mass(page_attention(tiny, page, mass), page.segment, 2, mass)[:, 1],
    )


def test_only_the_layers_needed_run_and_the_model_is_restored(tiny_dir: Path) -> None:
    fresh = load_model(tiny_dir, device="cpu")
    tok = fresh.tokenizer
    q, c = tokenize(tok, ["cheap flights", "fly to rome now"], 8)
    page = assemble_pages(tok, [q], [[c]])
    # the first call runs every layer (transformers hooks its recorders then) ...
    page_attention(fresh, page, AttentionSpec([1]))
    assert fresh.full_pass_done
    # ... so that a later call for the last layer still sees all the maps
    n_tok = page.input_ids.shape[1]
    assert page_attention(fresh, page, AttentionSpec([2])).shape == (1, n_tok, n_tok)
    tiny = fresh
    calls = []
    hooks = [
        layer.register_forward_hook(lambda *a, i=i: calls.append(i))
        for i, layer in enumerate(tiny.model.encoder.layer)
    ]
    try:
        first = page_attention(tiny, page, AttentionSpec([1], "mean"))
    finally:
        for h in hooks:
            h.remove()
    assert calls == [0]  # layer 2 never ran
    assert len(tiny.model.encoder.layer) == 2
    with torch.inference_mode():
        out = tiny.model(
            input_ids=torch.as_tensor(page.input_ids),
            token_type_ids=torch.as_tensor(page.token_type),
            attention_mask=torch.as_tensor(page.mask),
            output_attentions=True,
        )
    assert len(out.attentions) == 2
    expect = out.attentions[0][0].mean(0).numpy()
    np.testing.assert_allclose(first[0].numpy(), expect, atol=1e-6)


def test_layers_pick_the_right_maps() -> None:
    assert AttentionSpec(layers=1).layer_indices(6) == [5]
    assert AttentionSpec(layers=3).layer_indices(6) == [3, 4, 5]
    assert AttentionSpec(layers=[3]).layer_indices(6) == [2]
    assert AttentionSpec(layers=[5, 2, 2]).layers == (2, 5)
    with pytest.raises(ValueError, match=r"layers=\[7\] but the model has 6"):
        AttentionSpec(layers=[7]).layer_indices(6)
    with pytest.raises(ValueError, match="layers must be"):
        AttentionSpec(layers=[])
    with pytest.raises(ValueError, match="unknown relevance score 'cosine'"):
        AttentionSpec(score="cosine")
    assert BankSettings(layers=[3]) == BankSettings(layers=(3,))


def test_bad_attention_settings_are_named() -> None:
    with pytest.raises(ValueError, match="head aggregation 'median'"):
        AttentionSpec(heads="median")
    with pytest.raises(ValueError, match="layers must be"):
        AttentionSpec(layers=0)
    with pytest.raises(ValueError, match=r"unknown valuation parameter.*'layer'"):
        BankSettings.from_params({"layer": 2})
    with pytest.raises(ValueError, match=r"'lyers'; known: layers, .*corpus, bank_dir"):
        make_source("attention", lyers=2)
    with pytest.raises(ValueError, match="unknown value distribution 'gamma'"):
        make_source("attention", dist="gamma")
    with pytest.raises(ValueError, match="max_slots=9 exceeds"):
        BankSettings(max_slots=9, candidates_per_query=4)


# ---------------------------------------------------------------------- bank


def test_bank_round_trips(bank_path: Path, tiny, corpus_dir: Path) -> None:
    bank = load_bank(bank_path)
    corpus = load_corpus(corpus_dir)
    assert bank.n_queries == 9 and bank.candidates_per_query == 6
    assert bank.alpha.shape == (9, 2, 3, 3)
    assert isinstance(bank.relevance_raw, np.memmap)
    # own flags and the 3 + 3 split follow the corpus' verticals
    qv = np.asarray(corpus.query_verticals)[bank.queries]
    cv = np.asarray(corpus.cand_verticals)[bank.candidates]
    np.testing.assert_array_equal(bank.own, cv == qv[:, None])
    assert (bank.own.sum(axis=1) == 3).all()
    assert all(len(set(row)) == 6 for row in bank.candidates.tolist())
    # one stored r_raw recomputed from scratch
    spec = BankSettings(**SETTINGS).spec
    i, j = 4, 2
    q = tokenize(tiny.tokenizer, [corpus.query_texts[bank.queries[i]]], 8)
    c = tokenize(tiny.tokenizer, [corpus.cand_texts[bank.candidates[i, j]]], 12)
    expect = pair_relevance(tiny, q, c, spec)[0]
    assert bank.relevance_raw[i, j] == pytest.approx(expect, abs=1e-5)
    # and one stored alpha: layout 1 of query 3 with K = 3 slots
    pc = bank.page_candidates[3, 1]
    assert set(pc.tolist()) <= set(bank.candidates[3].tolist())
    q = tokenize(tiny.tokenizer, [corpus.query_texts[bank.queries[3]]], 8)
    cs = tokenize(tiny.tokenizer, [corpus.cand_texts[x] for x in pc], 12)
    page = assemble_pages(tiny.tokenizer, q, [cs])
    m = segment_mass(page_attention(tiny, page, spec), page.segment, 4, spec)[0, 1:]
    np.testing.assert_allclose(
        bank.alpha[3, 1, 2], np.sort(m / m.sum())[::-1], atol=1e-5
    )


def test_alpha_sums_to_one_and_descends(bank_path: Path) -> None:
    alpha = np.asarray(load_bank(bank_path).alpha, dtype=np.float64)
    for k in range(1, 4):
        a = alpha[:, :, k - 1]
        np.testing.assert_allclose(a[..., :k].sum(axis=-1), 1.0, atol=1e-5)
        assert (np.diff(a[..., :k], axis=-1) <= 0).all()
        assert (a[..., k:] == 0).all()
        assert (a[..., :k] > 0).all()
    assert (alpha[:, :, 0, 0] == 1.0).all()


def test_existing_bank_is_reused_not_rebuilt(
    bank_path: Path, tiny, corpus_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import attn_env.valuations.model as model_mod

    def boom(*args, **kwargs):
        raise AssertionError("the model ran although the bank exists")

    monkeypatch.setattr(model_mod, "page_attention", boom)
    again = build_bank(
        BankSettings(**SETTINGS),
        load_corpus(corpus_dir),
        tiny,
        bank_dir=bank_path.parent,
        progress=False,
    )
    assert again == bank_path


def test_every_setting_corpus_and_model_change_the_key() -> None:
    base = BankSettings()
    key = bank_key(base, "model-a", "corpus-a")
    assert bank_key(BankSettings(), "model-a", "corpus-a") == key
    changed = {
        "layers": 2,
        "score": "mass",
        "lift_heads": [[2, 1]],
        "heads": "mean",
        "source": "cls",
        "max_query_tokens": 9,
        "max_candidate_tokens": 11,
        "n_queries": 5,
        "candidates_per_query": 17,
        "own_fraction": 0.5,
        "pages": 3,
        "max_slots": 4,
        "seed": 1,
    }
    # every setting users write (the attention spec's fields and the bank's own)
    assert set(changed) == set(base.to_params())
    keys = {key}
    for name, value in changed.items():
        keys.add(
            bank_key(dataclasses.replace(base, **{name: value}), "model-a", "corpus-a")
        )
    keys.add(bank_key(base, "model-b", "corpus-a"))
    keys.add(bank_key(base, "model-a", "corpus-b"))
    assert len(keys) == len(changed) + 3


def test_changed_setting_finds_no_stale_bank(
    bank_path: Path, tiny, corpus_dir: Path
) -> None:
    corpus = load_corpus(corpus_dir)
    root = bank_path.parent
    assert (
        find_bank(BankSettings(**SETTINGS), tiny.identity, corpus.content_hash, root)
        == bank_path
    )
    other = BankSettings(**{**SETTINGS, "layers": 2})
    assert find_bank(other, tiny.identity, corpus.content_hash, root) is None


def test_interrupted_build_leaves_no_bank(
    tiny, corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import attn_env.valuations.model as model_mod

    real, calls = model_mod.segment_mass, []

    def dies_on_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(model_mod, "segment_mass", dies_on_third_batch)
    corpus = load_corpus(corpus_dir)
    with pytest.raises(KeyboardInterrupt):
        build_bank(
            BankSettings(**SETTINGS),
            corpus,
            tiny,
            bank_dir=tmp_path,
            batch_size=8,
            progress=False,
        )
    assert list(tmp_path.iterdir()) == []
    assert (
        find_bank(
            BankSettings(**SETTINGS), tiny.identity, corpus.content_hash, tmp_path
        )
        is None
    )
    # a folder killed before its manifest (no cleanup ran) is not a bank either
    key = bank_key(BankSettings(**SETTINGS), tiny.identity, corpus.content_hash)
    (tmp_path / key).mkdir()
    (tmp_path / key / "alpha.npy").write_bytes(b"half-written")
    assert (
        find_bank(
            BankSettings(**SETTINGS), tiny.identity, corpus.content_hash, tmp_path
        )
        is None
    )
    with pytest.raises(FileNotFoundError, match="not a complete attention bank"):
        load_bank(tmp_path / key)
    # and the next build replaces it with a complete bank
    monkeypatch.setattr(model_mod, "segment_mass", real)
    path = build_bank(
        BankSettings(**SETTINGS), corpus, tiny, bank_dir=tmp_path, progress=False
    )
    assert path == tmp_path / key
    assert load_bank(path).alpha.shape == (9, 2, 3, 3)


def test_bad_corpus_rows_are_named(tmp_path: Path) -> None:
    (tmp_path / "queries.jsonl").write_text(
        '{"id": "q1", "text": "hi", "vertical": "a"}\n'
    )
    (tmp_path / "candidates.jsonl").write_text(
        '{"id": "c1", "text": "", "vertical": "a"}\n'
    )
    with pytest.raises(
        ValueError, match=r"candidates.jsonl:1: expected a non-empty string 'text'"
    ):
        load_corpus(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"queries\.jsonl and candidates"):
        load_corpus(tmp_path / "nowhere")


def test_shipped_corpus_is_large_and_balanced() -> None:
    c = load_corpus()
    assert len(c.query_texts) >= 300 and len(c.cand_texts) >= 2000
    verticals = set(c.query_verticals)
    assert len(verticals) >= 8 and verticals == set(c.cand_verticals)
    assert len(set(c.cand_texts)) == len(c.cand_texts)


def test_relevance_maps() -> None:
    raw = np.array([[0.2, 0.4, 0.3, 0.1], [0.5, 0.5, 0.6, 0.4]])
    r = map_relevance(raw, "max")
    np.testing.assert_allclose(r, raw / raw.max(axis=1, keepdims=True))
    lg = map_relevance(raw, "logistic")
    assert ((lg > 0) & (lg < 1)).all()
    z = (raw[0] - raw[0].mean()) / raw[0].std()
    np.testing.assert_allclose(lg[0], 1 / (1 + np.exp(-z)))
    # monotone within a query, ties kept
    assert (
        np.argsort(lg, axis=1, kind="stable") == np.argsort(raw, axis=1, kind="stable")
    ).all()
    with pytest.raises(ValueError, match="unknown relevance map 'rank'"):
        map_relevance(raw, "rank")


# ---------------------------------------------------------------------- source


def _source(bank_path: Path, **kw):
    return make_source("attention", bank_path=str(bank_path), **kw)


def test_draws_have_shapes_ranges_and_are_seeded(bank_path: Path) -> None:
    src = _source(bank_path, dist="uniform", low=0.5, high=2.0)
    assert isinstance(src, ValuationSource) and src.name == "attention"
    d = src.draw(np.random.default_rng(7), 500, 4, 3)
    assert isinstance(d, Draw)
    assert d.theta.shape == d.relevance.shape == (500, 4) and d.alpha.shape == (500, 3)
    assert ((d.theta >= 0.5) & (d.theta <= 2.0)).all()
    assert ((d.relevance > 0) & (d.relevance < 1)).all()
    np.testing.assert_allclose(d.alpha.sum(axis=1), 1.0, atol=1e-5)
    assert (np.diff(d.alpha, axis=1) <= 0).all()
    again = src.draw(np.random.default_rng(7), 500, 4, 3)
    for a, b in (
        (d.theta, again.theta),
        (d.relevance, again.relevance),
        (d.alpha, again.alpha),
    ):
        np.testing.assert_array_equal(a, b)
    other = src.draw(np.random.default_rng(8), 500, 4, 3)
    assert not np.array_equal(d.relevance, other.relevance)


def _synthetic_bank(folder: Path, n_q: int = 5, n_c: int = 6) -> Path:
    """A hand-made bank whose r names its pair.

    r[q, 0] = 1 and r[q, c] = 0.5 + (q n_c + c) / 1000 otherwise.
    """
    folder.mkdir()
    k = np.arange(n_q * n_c).reshape(n_q, n_c)
    raw = 0.5 + k / 1000.0
    raw[:, 0] = 1.0
    alpha = np.zeros((n_q, 1, 2, 2), dtype=np.float32)
    alpha[:, 0, 0, 0] = 1.0
    alpha[:, 0, 1] = [0.6, 0.4]
    arrays = {
        "queries": np.arange(n_q, dtype=np.int32),
        "candidates": k.astype(np.int32),
        "own": np.zeros((n_q, n_c), dtype=bool),
        "relevance_raw": raw.astype(np.float32),
        "page_candidates": np.zeros((n_q, 1, 2), dtype=np.int32),
        "alpha": alpha,
    }
    for name, arr in arrays.items():
        np.save(folder / f"{name}.npy", arr)
    (folder / "manifest.json").write_text(json.dumps({"format": 1}))
    return folder


def test_buyers_get_distinct_candidates_of_one_query_uniformly(tmp_path: Path) -> None:
    n_q, n_c, n, markets = 5, 6, 3, 6000
    src = _source(_synthetic_bank(tmp_path / "bank", n_q, n_c), relevance="max")
    d = src.draw(np.random.default_rng(0), markets, n, 2)
    top = np.isclose(d.relevance, 1.0)
    k = np.rint((d.relevance - 0.5) * 1000).astype(int)
    assert np.allclose(d.relevance[~top], 0.5 + k[~top] / 1000, atol=1e-6)
    assert (top.sum(axis=1) <= 1).all()
    q_of = np.where(top, -1, k // n_c)
    q = q_of.max(axis=1)  # every market has >= 2 buyers off the top candidate
    assert ((q_of == q[:, None]) | top).all()  # all buyers of a market share one query
    c = np.where(top, 0, k % n_c)
    assert all(len(set(row)) == n for row in c.tolist())  # distinct candidates
    # every buyer sits on each candidate about 1/6 of the time; queries about 1/5
    for i in range(n):
        freq = np.bincount(c[:, i], minlength=n_c) / markets
        np.testing.assert_allclose(freq, 1 / n_c, atol=0.025)
    freq_q = np.bincount(q, minlength=n_q) / markets
    np.testing.assert_allclose(freq_q, 1 / n_q, atol=0.025)
    np.testing.assert_allclose(d.alpha, np.tile([0.6, 0.4], (markets, 1)), atol=1e-6)


def test_draw_rejects_more_buyers_or_slots_than_the_bank_holds(bank_path: Path) -> None:
    src = _source(bank_path)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"n_buyers must be in \[1, 6\].*got 7"):
        src.draw(rng, 2, 7, 1)
    with pytest.raises(ValueError, match=r"n_slots must be in \[1, 3\].*got 4"):
        src.draw(rng, 2, 2, 4)
    with pytest.raises(ValueError, match="bank_path opens a built bank"):
        _source(bank_path, layers=2)


def test_missing_bank_is_built_on_first_use_and_said(
    tiny_dir: Path, corpus_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    params = dict(
        model_dir=str(tiny_dir),
        corpus=str(corpus_dir),
        bank_dir=str(tmp_path),
        device="cpu",
        **{**SETTINGS, "n_queries": 3},
    )
    with pytest.raises(FileNotFoundError, match="valuations build"):
        make_source("attention", build="never", **params)
    src = make_source("attention", **params)
    assert "building one now" in capsys.readouterr().err
    assert src.bank.n_queries == 3
    make_source("attention", **params)
    assert "building" not in capsys.readouterr().err


# ------------------------------------------------------------------------- cli


def _write_config(path: Path, params: dict) -> Path:
    import yaml

    cfg = {
        "seed": 0,
        "env": {
            "mechanism": "gsp",
            "n_buyers": 3,
            "n_slots": 2,
            "valuation": "attention",
            "valuation_params": params,
        },
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run_cli(argv: list[str]) -> int:
    import argparse

    from attn_market.commands.valuations import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_build_and_show(
    tiny_dir: Path, corpus_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    params = dict(
        model_dir=str(tiny_dir),
        corpus=str(corpus_dir),
        bank_dir=str(tmp_path / "banks"),
        **{**SETTINGS, "n_queries": 2},
    )
    cfg = _write_config(tmp_path / "cfg.yaml", params)
    assert (
        _run_cli(["valuations", "build", str(cfg), "--device", "cpu", "--quiet"]) == 0
    )
    out = capsys.readouterr().out
    assert "2 queries x 6 candidates" in out
    assert len(list((tmp_path / "banks").iterdir())) == 1
    png = tmp_path / "pics" / "heat.png"
    assert (
        _run_cli(
            [
                "valuations",
                "show",
                "--query",
                "best running shoes",
                "--candidate",
                "trail sneakers on sale",
                "--candidate",
                "tax help",
                "--config",
                str(cfg),
                "--out",
                str(png),
            ]
        )
        == 0
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in png.parent.iterdir()] == ["heat.png"]  # no temp left
    # the chosen ads with their r, in slot order
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("r (lift of heads L1H1, L2H2")
    assert (
        lines[1].startswith("  slot 1  r=0.") and "trail sneakers on sale" in lines[1]
    )
    assert lines[2].startswith("  slot 2  r=0.") and lines[2].endswith("tax help")


# ------------------------------------------------------------------------- env


def _env_or_skip():
    try:
        import attn_env.market_env
    except ImportError:
        pytest.skip("attn_env.market_env is not there yet")
    import attn_env

    return attn_env


def test_env_with_attention_passes_pettingzoo_api_and_seed_tests(
    bank_path: Path,
) -> None:
    attn_env = _env_or_skip()
    from pettingzoo.test import parallel_api_test, parallel_seed_test

    def make():
        return attn_env.parallel_env(
            mechanism="gsp",
            n_buyers=4,
            n_slots=3,
            valuation="attention",
            valuation_params={"bank_path": str(bank_path)},
            rounds=2,
        )

    parallel_api_test(make(), num_cycles=20)
    parallel_seed_test(make, num_cycles=20)


def test_env_values_come_from_the_bank(bank_path: Path) -> None:
    attn_env = _env_or_skip()
    e = attn_env.parallel_env(
        mechanism="gsp",
        n_buyers=4,
        n_slots=3,
        valuation="attention",
        valuation_params={"bank_path": str(bank_path), "relevance": "max"},
        value_low=1.0,
        value_high=1.0 + 1e-9,
    )
    r = map_relevance(load_bank(bank_path).relevance_raw, "max")
    for seed in range(5):
        obs, _ = e.reset(seed=seed)
        values = np.array([obs[f"buyer_{i}"][0] for i in range(4)])
        # theta is ~1, so a buyer's value per unit is r of a bank candidate
        assert np.isclose(values[:, None], r.ravel()[None], atol=1e-5).any(axis=1).all()


@pytest.mark.parametrize(("n", "k"), [(4, 2), (3, 3), (5, 1)])
def test_ordered_samples_without_replacement_are_uniform(n: int, k: int) -> None:
    import itertools
    import math

    from attn_env.valuations.attention import _sample_without_replacement

    draws = _sample_without_replacement(np.random.default_rng(3), 60_000, n, k)
    outcomes = list(itertools.permutations(range(n), k))
    index = {o: i for i, o in enumerate(outcomes)}
    counts = np.bincount(
        [index[tuple(r)] for r in draws.tolist()], minlength=len(outcomes)
    )
    expected = 60_000 / math.perm(n, k)
    # every ordered k-tuple of distinct values, each within 5 sigma of its mean
    assert counts.sum() == 60_000
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)


@settings(max_examples=25, deadline=None)
@given(
    data=st.data(),
    n_pages=st.integers(1, 3),
    heads=st.sampled_from(["mean", "max"]),
    source=st.sampled_from(["query", "cls"]),
)
def test_slot_masses_are_distributions_on_random_pages(
    tiny, data, n_pages: int, heads: str, source: str
) -> None:
    """Any pages of random word pieces: every m row sums to 1, absent slots get 0."""
    word = st.lists(st.integers(1000, 29000), min_size=1, max_size=6)
    queries, slots = [], []
    for _ in range(n_pages):
        queries.append(data.draw(word))
        slots.append(data.draw(st.lists(word, min_size=1, max_size=4)))
    page = assemble_pages(tiny.tokenizer, queries, slots)
    spec = AttentionSpec([1, 2], heads, source)
    mass = segment_mass(page_attention(tiny, page, spec), page.segment, 5, spec)
    np.testing.assert_allclose(mass.sum(axis=1), 1.0, atol=1e-5)
    assert (mass >= 0).all()
    for b, s in enumerate(slots):
        assert (mass[b, len(s) + 1 :] == 0).all()
        assert (mass[b, 1 : len(s) + 1] > 0).all()


@pytest.mark.parametrize("name", ["relevance_raw", "alpha"])
def test_bank_holding_nan_fails_validate_naming_the_array(
    bank_path: Path, tmp_path: Path, name: str
) -> None:
    import shutil

    from attn_env.valuations.bank_validate import validate_bank

    path = tmp_path / "bank"
    shutil.copytree(bank_path, path)
    arr = np.load(path / f"{name}.npy")
    arr.reshape(-1)[1] = np.nan
    np.save(path / f"{name}.npy", arr)
    with pytest.raises(ValueError, match=rf"{name}\.npy: holds 1 non-finite"):
        load_bank(path)  # a file on disk is refused when it is opened
    # a Bank made in memory is checked again by validate, before any model work
    bank = dataclasses.replace(load_bank(bank_path), **{name: arr})
    with pytest.raises(ValueError, match=rf"{name} \({name}\.npy\) holds 1 non-finite"):
        validate_bank(bank, corpus=None, lm=None)


def test_temp_folder_of_a_killed_build_is_removed_by_the_next(tmp_path) -> None:
    # The temp folder names its builder's pid: once that process is gone the
    # folder is stale at once; a live builder's folder (ours) is kept.
    from attn_env.valuations.bank_build import _remove_stale_temps

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = tmp_path / f".tmp-abc123-{dead.pid}-x1y2"
    alive = tmp_path / f".tmp-abc123-{os.getpid()}-z3w4"
    unknown = tmp_path / ".tmp-abc123-q5r6"  # no pid: the age rule decides
    for folder in (killed, alive, unknown):
        folder.mkdir()
        (folder / "queries.npy").write_bytes(b"partial")
    _remove_stale_temps(tmp_path)
    assert not killed.exists()
    assert alive.exists() and unknown.exists()
    old = time.time() - 7200
    os.utime(unknown, (old, old))
    _remove_stale_temps(tmp_path)
    assert not unknown.exists() and alive.exists()


@pytest.mark.parametrize("tty", [True, False])
def test_validate_shows_a_bar_on_a_terminal_only(
    bank_path: Path, corpus_dir: Path, tiny, monkeypatch, tty: bool
) -> None:
    import io

    from attn_env.valuations.bank_validate import validate_bank

    class Stderr(io.StringIO):
        def isatty(self) -> bool:
            return tty

    corpus = load_corpus(corpus_dir)
    runs = {}
    for progress in (True, False):
        err = Stderr()
        monkeypatch.setattr(sys, "stderr", err)
        result = validate_bank(load_bank(bank_path), corpus, tiny, progress=progress)
        runs[progress] = (result, "cosine baseline: embedding" in err.getvalue())
    assert runs[True][1] is tty  # the bar: on a terminal, when asked
    assert runs[False][1] is False
    assert runs[True][0] == runs[False][0]  # same batches, same numbers


# --------------------------------------------------------------- quiet loading


def _hf_switches() -> tuple[int, bool, bool]:
    """transformers' verbosity and both progress-bar switches, as they stand."""
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    return (
        hf_logging.get_verbosity(),
        hf_logging.is_progress_bar_enabled(),
        hub_utils.are_progress_bars_disabled(),
    )


def test_model_loading_is_quiet_unless_verbose_and_leaves_settings_as_found(
    tiny_dir: Path, capfd: pytest.CaptureFixture, tmp_path: Path
) -> None:
    before = _hf_switches()
    load_model(tiny_dir, device="cpu")
    assert "Loading weights" not in capfd.readouterr().err
    assert _hf_switches() == before
    load_model(tiny_dir, device="cpu", verbose=True)
    assert "Loading weights" in capfd.readouterr().err  # the bar is real
    assert _hf_switches() == before
    with pytest.raises((OSError, ValueError)):
        load_model(tmp_path, device="cpu")  # an empty folder: the load fails
    assert _hf_switches() == before


def test_show_refuses_a_bad_out_before_loading_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import attn_env.valuations.model as model
    from attn_env.errors import UserError

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(model, "load_model", never)
    (tmp_path / "link.png").symlink_to(tmp_path / "elsewhere.png")
    os.mkfifo(tmp_path / "pipe.png")
    for out, kind in (
        ("/dev/null", "a device"),
        (str(tmp_path / "link.png"), "a symlink"),
        (str(tmp_path / "pipe.png"), "a fifo"),
    ):
        with pytest.raises(UserError, match=f"--out: refusing to write .*{kind}"):
            _run_cli(["valuations", "show", "--query", "q", "--out", out])
    assert not (tmp_path / "elsewhere.png").exists()


def test_every_valuations_command_takes_verbose() -> None:
    import argparse

    from attn_market.commands.valuations import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    for argv in (["build", "c.yaml"], ["show", "--query", "q"], ["validate", "c.yaml"]):
        assert parser.parse_args(["valuations", *argv]).verbose is False
        assert parser.parse_args(["valuations", *argv, "--verbose"]).verbose is True
