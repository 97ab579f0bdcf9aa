"""relevance() and slot_attention(), the lift score, the probes and ranking metrics.

Most tests run on the tiny random BERT of ``conftest.tiny_dir`` (the attention
path, not its numbers); ``real_model`` ones load MiniLM-L6 and check that the
new score beats the earlier one on dev queries, and (``gpu``) that CUDA fp16
agrees with the CPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from attn_env.valuations import relevance, slot_attention
from attn_env.valuations.probes import PROBE_SETS, ProbeSet, load_probe
from attn_env.valuations.ranking_metrics import (
    evaluate_probe,
    ranking_metrics,
)

TINY_SPEC = {"lift_heads": [[1, 1], [2, 2]]}  # the tiny BERT has 2 layers x 2 heads
QUERY = "best running shoes for flat feet"
ADS = [
    "Supportive trainers built for fallen arches on long jogs.",
    "Running a small shop? The best card reader for retailers.",
    "Raising cherry plants on a balcony in containers.",
    "Low-cost motor cover for people who just passed their test.",
    "Whey shakes that help you bulk up after lifting.",
]


# -- probes and metrics (no model) ------------------------------------------------


def test_shipped_probes_are_disjoint_and_complete() -> None:
    sets = {name: load_probe(name) for name in PROBE_SETS}
    for probe in sets.values():
        assert len(probe.items) >= 60
        assert "CC0" in probe.licence
        assert len({item.vertical for item in probe.items}) == 8
        for item in probe.items:
            assert item.positives and item.distractors and len(item.negatives) >= 2
            kinds = item.kinds
            assert len(kinds) == len(item.candidates)
            assert kinds.count("positive") == len(item.positives)
    dev = {item.query for item in sets["dev"].items}
    held = {item.query for item in sets["heldout"].items}
    assert not dev & held


def test_ranking_metrics_by_hand() -> None:
    kinds = [["positive", "distractor", "negative", "negative", "negative"]] * 3
    scores = [
        np.array([0.9, 0.5, 0.1, 0.2, 0.3]),  # positive first: P@1 1, RR 1
        np.array([0.4, 0.8, 0.1, 0.2, 0.3]),  # distractor first, positive 2nd
        np.array([0.1, 0.2, 0.3, 0.4, 0.5]),  # positive last: rank 5, out of top 4
    ]
    m = ranking_metrics(scores, kinds)
    assert m["p_at_1"] == pytest.approx(1 / 3)
    assert m["distractor_first"] == pytest.approx(1 / 3)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 5) / 3)
    assert m["ndcg_at_4"] == pytest.approx((1 + 1 / np.log2(3) + 0) / 3)


def test_ties_count_against_the_positive() -> None:
    kinds = [["negative", "positive", "distractor"]]
    m = ranking_metrics([np.array([0.5, 0.5, 0.5])], kinds)
    assert m["p_at_1"] == 0.0
    assert m["mrr"] == pytest.approx(1 / 3)


def test_bad_probe_files_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match="no probe file 'nope'; shipped sets: dev, heldout"
    ):
        load_probe("nope")
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"items": [{"id": "a", "vertical": "v", "query": "q"}]}))
    with pytest.raises(ValueError, match="needs at least one positive"):
        load_probe(bad)
    bad.write_text(
        json.dumps(
            {"items": [{"id": "a", "vertical": "v", "query": "q", "positives": [3]}]}
        )
    )
    with pytest.raises(ValueError, match="'positives' must be a list of non-empty"):
        load_probe(bad)
    with pytest.raises(ValueError, match="2 scores for 3 candidates"):
        ranking_metrics([np.zeros(2)], [["positive", "negative", "negative"]])


# -- the scoring API on the tiny BERT -------------------------------------------------


def test_relevance_in_unit_interval_and_batching_equals_one_by_one(tiny) -> None:
    r = relevance(QUERY, ADS, model=tiny, **TINY_SPEC)
    assert r.shape == (len(ADS),) and r.dtype == np.float64
    assert ((r > 0) & (r < 1)).all()
    assert np.ptp(r) > 0  # the read depends on the text
    one_by_one = [relevance(QUERY, [ad], model=tiny, **TINY_SPEC)[0] for ad in ADS]
    np.testing.assert_allclose(r, one_by_one, atol=1e-6)
    small_batches = relevance(QUERY, ADS, model=tiny, batch_size=2, **TINY_SPEC)
    np.testing.assert_allclose(r, small_batches, atol=1e-6)
    # the order of the candidates does not change any candidate's r
    flipped = relevance(QUERY, ADS[::-1], model=tiny, **TINY_SPEC)
    np.testing.assert_allclose(r, flipped[::-1], atol=1e-6)


def test_lift_is_half_for_the_neutral_query_itself(tiny) -> None:
    from attn_env.valuations.lift import NEUTRAL_QUERY

    r = relevance(NEUTRAL_QUERY, ADS, model=tiny, **TINY_SPEC)
    np.testing.assert_allclose(r, 0.5, atol=1e-6)


def test_earlier_scores_stay_selectable(tiny) -> None:
    for score in ("maxsim", "mass"):
        r = relevance(QUERY, ADS, model=tiny, score=score, layers=[2])
        assert ((r >= 0) & (r <= 1)).all()
    assert not np.allclose(
        relevance(QUERY, ADS, model=tiny, score="maxsim", layers=[2]),
        relevance(QUERY, ADS, model=tiny, score="mass", layers=[2]),
    )


def test_slot_attention_sums_to_one_in_page_order(tiny) -> None:
    alpha = slot_attention(QUERY, ADS[:3], model=tiny, layers=[2])
    assert alpha.shape == (3,)
    assert (alpha > 0).all()
    assert alpha.sum() == pytest.approx(1.0)
    # one slot holds all the attention to the slots
    assert slot_attention(QUERY, ADS[:1], model=tiny, layers=[2]) == pytest.approx([1])


@pytest.mark.parametrize(
    ("query", "candidates", "message"),
    [
        ("", ADS, "query is empty"),
        ("   ", ADS, "query is empty"),
        (3, ADS, "query must be a string, got int"),
        (QUERY, [], "candidates is empty"),
        (QUERY, "one ad", "candidates must be a list of strings, got str"),
        (QUERY, ["ok", None], r"candidates\[1\] must be a string, got NoneType"),
        (QUERY, ["ok", ""], r"candidates\[1\] is empty"),
    ],
)
def test_bad_input_one_line_value_error(tiny, query, candidates, message) -> None:
    for fn in (relevance, slot_attention):
        with pytest.raises(ValueError, match=message) as err:
            fn(query, candidates, model=tiny)
        assert "\n" not in str(err.value)


def test_bad_spec_names_the_setting(tiny) -> None:
    with pytest.raises(ValueError, match="unknown relevance score 'cosine'"):
        relevance(QUERY, ADS, model=tiny, score="cosine")
    with pytest.raises(ValueError, match="lift_heads must be a non-empty list"):
        relevance(QUERY, ADS, model=tiny, lift_heads=[[1]])
    with pytest.raises(ValueError, match="outside the model's 2 layers x 2 heads"):
        relevance(QUERY, ADS, model=tiny, lift_heads=[[3, 1]])


def test_long_texts_truncated_with_a_warning(tiny) -> None:
    long_ad = " ".join(["shoes"] * 80)
    with pytest.warns(UserWarning, match=r"candidates\[1\] truncated from 80 to 40"):
        r = relevance(QUERY, [ADS[0], long_ad], model=tiny, **TINY_SPEC)
    with pytest.warns(UserWarning, match="query truncated from 80 to 24"):
        relevance(long_ad, ADS[:1], model=tiny, **TINY_SPEC)
    # truncation is what a shorter text scores
    cut = " ".join(["shoes"] * 40)
    assert r[1] == pytest.approx(relevance(QUERY, [cut], model=tiny, **TINY_SPEC)[0])


def test_bank_stores_the_lift_of_the_api(tiny, tmp_path: Path) -> None:
    """A bank built with score lift holds relevance() of its pairs."""
    from attn_env.valuations.bank import BankSettings, build_bank, load_bank
    from attn_env.valuations.corpus_io import load_corpus

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows = {
        "queries": [("q0", "running shoes", "shoes"), ("q1", "tax help", "tax")],
        "candidates": [
            (f"c{i}", text, v)
            for i, (text, v) in enumerate(
                [
                    ("trail sneakers", "shoes"),
                    ("boots on sale", "shoes"),
                    ("file your return", "tax"),
                    ("an accountant", "tax"),
                ]
            )
        ],
    }
    for name, items in rows.items():
        (corpus / f"{name}.jsonl").write_text(
            "".join(
                json.dumps({"id": i, "text": t, "vertical": v}) + "\n"
                for i, t, v in items
            )
        )
    data = load_corpus(corpus)
    settings = BankSettings(
        layers=[2],
        n_queries=None,
        candidates_per_query=2,
        own_fraction=0.5,
        pages=1,
        max_slots=2,
        **TINY_SPEC,
    )
    bank = load_bank(
        build_bank(settings, data, tiny, bank_dir=tmp_path, progress=False)
    )
    for qi, q in enumerate(bank.queries):
        texts = [data.cand_texts[c] for c in bank.candidates[qi]]
        expect = relevance(data.query_texts[q], texts, model=tiny, **TINY_SPEC)
        np.testing.assert_allclose(bank.relevance_raw[qi], expect, atol=1e-5)


# -- the real MiniLM ----------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    from attn_env.valuations.model import load_model

    return load_model(device="cpu")


@pytest.mark.real_model
def test_lift_beats_the_earlier_score_on_dev_queries(minilm) -> None:
    """On 16 dev queries (two per vertical) lift ranks the paraphrase first more
    often than the earlier maxsim default, which falls for lexical distractors."""
    dev = load_probe("dev")
    subset = ProbeSet("dev16", dev.licence, dev.items[::4])

    def scorer(score: str):
        return lambda q, cands: relevance(q, cands, model=minilm, score=score)

    new, old = (
        evaluate_probe(subset, scorer("lift")),
        evaluate_probe(subset, scorer("maxsim")),
    )
    assert new["p_at_1"] >= old["p_at_1"] + 0.3, (new, old)
    assert new["p_at_1"] >= 0.75
    assert new["distractor_first"] <= 0.15
    assert old["distractor_first"] >= 0.5


@pytest.mark.real_model
def test_real_slot_attention_shows_a_position_effect(minilm) -> None:
    alpha = slot_attention(QUERY, ADS[:3], model=minilm)
    assert alpha.sum() == pytest.approx(1.0)
    assert alpha[0] > alpha[2]


@pytest.mark.gpu
def test_cuda_fp16_lift_matches_cpu_fp32(minilm) -> None:
    """On a GPU (fp16), lift is within 1e-2 of the CPU's fp32 and ranks the same."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from attn_env.valuations.model import load_model

    gpu = load_model(device="cuda")
    assert next(gpu.model.parameters()).dtype == torch.float16
    for item in load_probe("dev").items[::8]:
        cands = item.candidates
        cpu_r = relevance(item.query, cands, model=minilm)
        gpu_r = relevance(item.query, cands, model=gpu, batch_size=256)
        np.testing.assert_allclose(gpu_r, cpu_r, atol=1e-2)
        assert np.argmax(gpu_r) == np.argmax(cpu_r)
        # same order for every pair the CPU separates by more than fp16 noise
        sure = (cpu_r[:, None] - cpu_r[None, :]) > 2e-2
        assert ((gpu_r[:, None] - gpu_r[None, :])[sure] > 0).all()
