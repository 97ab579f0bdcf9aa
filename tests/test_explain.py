"""Explanation records: the price setters reproduce every mechanism's payment."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from attn_env import mechanisms
from attn_env.integrity.explain import explain_market, page_attention, setter_price
from attn_market.cli import build_parser, main
from runner.audit_report import explain_note, explain_rows

ONE_SIDED = ("first_price", "second_price", "gsp", "vcg")
MATCHING = ("assignment", "stable_matching")
TWO_SIDED = ("k_double", "mcafee", "call_market", "cda")


def _explain_one_sided(name, bids, alpha, reserve=0.0, seed=0):
    """Clear one slot market and explain it (``bids [n]``, ``alpha [K]``)."""
    mech = mechanisms.make(name, reserve=reserve)
    rng = np.random.default_rng(seed)
    bids = np.asarray(bids, float)
    if mechanisms.family(name) == "matching":
        out = mech.clear(
            bids[None, :, None] * alpha[None, None, :], rng=rng, weights=alpha[None]
        )
    else:
        out = mech.clear(bids[None], weights=alpha[None], rng=rng)
    names = [f"buyer_{i}" for i in range(bids.size)]
    recs = explain_market(
        mech, names, bids.size, bids, bids, out.alloc[0], out.pay[0], alpha
    )
    return out, recs


def _explain_two_sided(name, bids, asks, reserve=0.0, seed=0, **kw):
    mech = mechanisms.make(name, reserve=reserve)
    out = mech.clear(
        np.asarray([bids], float),
        np.asarray([asks], float),
        rng=np.random.default_rng(seed),
        **kw,
    )
    n, m = len(bids), len(asks)
    names = [f"buyer_{i}" for i in range(n)] + [f"seller_{j}" for j in range(m)]
    alloc = np.concatenate([out.alloc[0], out.seller_alloc[0]])
    pay = np.concatenate([out.pay[0], out.seller_receipt[0]])
    b = np.concatenate([bids, asks]).astype(float)
    return out, explain_market(mech, names, n, b, b, alloc, pay, np.ones(1))


def _check_setters(recs, reserve):
    """Each trader's setters imply its price, and name real bids."""
    bid_of = {r["agent"]: r["bid"] for r in recs}
    for r in recs:
        if r["attention"] <= 0:
            assert r["price_setters"] == []
            continue
        terms = r["price_setters"]
        assert terms, r
        assert setter_price(terms) == pytest.approx(r["price"], rel=1e-9, abs=1e-12)
        for t in terms:
            if t["agent"] == "reserve":
                assert t["bid"] == reserve
            elif t["agent"] == "none":
                assert t["bid"] == 0.0
            else:
                assert t["bid"] == bid_of[t["agent"]]


# -- hand-computed records, one market per rule ------------------------------
ALPHA = np.array([0.5, 0.3, 0.2])
BIDS = [0.9, 0.2, 0.6, 0.4]  # ranks: buyer_0, buyer_2, buyer_3, buyer_1


def _setters(recs, agent):
    r = next(r for r in recs if r["agent"] == agent)
    return [
        (t["agent"], t["bid"], pytest.approx(t["weight"])) for t in r["price_setters"]
    ]


def test_gsp_record_by_hand():
    _, recs = _explain_one_sided("gsp", BIDS, ALPHA)
    r0 = recs[0]
    assert (r0["rank"], r0["slot"], r0["attention"]) == (1, 0, 0.5)
    assert r0["attention_share"] == pytest.approx(0.5)
    assert r0["price"] == pytest.approx(0.6)  # buyer_2's bid
    assert _setters(recs, "buyer_0") == [("buyer_2", 0.6, 1.0)]
    assert _setters(recs, "buyer_3") == [("buyer_1", 0.2, 1.0)]
    assert recs[1]["rank"] == 4 and recs[1]["slot"] is None


def test_first_price_and_second_price_by_hand():
    _, recs = _explain_one_sided("first_price", BIDS, ALPHA)
    assert _setters(recs, "buyer_2") == [("buyer_2", 0.6, 1.0)]
    _, recs = _explain_one_sided("second_price", BIDS, np.ones(1), reserve=0.7)
    # the reserve binds above the second bid 0.6
    assert _setters(recs, "buyer_0") == [("reserve", 0.7, 1.0)]
    assert recs[0]["payment"] == pytest.approx(0.7)


def test_vcg_externality_by_hand():
    _, recs = _explain_one_sided("vcg", BIDS, ALPHA)
    # slot 0 pays (0.5-0.3)*0.6 + (0.3-0.2)*0.4 + 0.2*0.2 = 0.2 per 0.5 attention
    assert _setters(recs, "buyer_0") == [
        ("buyer_2", 0.6, 0.4),
        ("buyer_3", 0.4, 0.2),
        ("buyer_1", 0.2, 0.4),
    ]
    assert recs[0]["payment"] == pytest.approx(0.2)


def test_k_double_and_mcafee_by_hand():
    bids, asks = [0.9, 0.7, 0.3], [0.1, 0.5, 0.8]  # q = 2: b_2 = 0.7, s_2 = 0.5
    _, recs = _explain_two_sided("k_double", bids, asks)
    assert _setters(recs, "buyer_0") == [("buyer_1", 0.7, 0.5), ("seller_1", 0.5, 0.5)]
    assert recs[0]["price"] == pytest.approx(0.6)
    # McAfee: p0 = (b_3 + s_3) / 2 = 0.55 lies in [s_2, b_2]: both trades stand
    _, recs = _explain_two_sided("mcafee", bids, asks)
    assert _setters(recs, "seller_0") == [("buyer_2", 0.3, 0.5), ("seller_2", 0.8, 0.5)]
    # p0 = (0.6 + 0.9) / 2 = 0.75 > b_2: trade reduction, buyers pay b_2
    _, recs = _explain_two_sided("mcafee", [0.9, 0.7, 0.6], [0.1, 0.5, 0.9])
    assert _setters(recs, "buyer_0") == [("buyer_1", 0.7, 1.0)]
    assert _setters(recs, "seller_0") == [("seller_1", 0.5, 1.0)]


def test_call_market_and_cda_by_hand():
    # q = 2; Walrasian interval [max(s_2, b_3), min(b_2, s_3)] = [0.5, 0.7]
    _, recs = _explain_two_sided("call_market", [0.9, 0.7, 0.3], [0.1, 0.5, 0.8])
    assert _setters(recs, "buyer_0") == [("buyer_1", 0.7, 0.5), ("seller_1", 0.5, 0.5)]
    assert recs[0]["price"] == pytest.approx(0.6)
    # CDA: the order that stood first sets the price
    ask_first = _explain_two_sided("cda", [0.8], [0.3], order=[[1, 0]])[1]
    assert _setters(ask_first, "buyer_0") == [("seller_0", 0.3, 1.0)]
    bid_first = _explain_two_sided("cda", [0.8], [0.3], order=[[0, 1]])[1]
    assert _setters(bid_first, "seller_0") == [("buyer_0", 0.8, 1.0)]


def test_lottery_market_has_no_setters():
    mech = mechanisms.make("gsp")
    recs = explain_market(
        mech,
        ["buyer_0", "buyer_1"],
        2,
        [0.9, 0.1],
        [0.9, 0.1],
        [0.0, 1.0],
        [0.0, 0.0],
        np.ones(1),
        lottery=True,
    )
    assert recs[1]["rule"].startswith("lottery")
    assert recs[1]["slot"] == 0 and recs[1]["price_setters"] == []


# -- property: the setters reproduce the payment rule --------------------------
_bids = st.lists(
    # mechanisms refuse magnitudes under 1e-150 (subnormals) with a UserError
    st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0]) | st.floats(1e-12, 1.0),
    min_size=1,
    max_size=6,
)


@pytest.mark.parametrize("name", ONE_SIDED + MATCHING)
@given(
    bids=_bids,
    k=st.integers(1, 4),
    reserve=st.sampled_from([0.0, 0.3]),
    seed=st.integers(0, 9),
)
@settings(max_examples=60, deadline=None)
def test_setters_reproduce_slot_prices(name, bids, k, reserve, seed):
    if name == "second_price":
        k = 1
    if name == "assignment":
        reserve = 0.0
    alpha = np.sort(np.random.default_rng(seed).dirichlet(np.ones(k)))[::-1]
    out, recs = _explain_one_sided(name, bids, alpha, reserve, seed)
    _check_setters(recs, reserve)
    assert [r["payment"] for r in recs] == pytest.approx(out.pay[0].tolist())


@pytest.mark.parametrize("name", TWO_SIDED)
@given(
    bids=_bids, asks=_bids, reserve=st.sampled_from([0.0, 0.3]), seed=st.integers(0, 9)
)
@settings(max_examples=60, deadline=None)
def test_setters_reproduce_double_auction_prices(name, bids, asks, reserve, seed):
    _, recs = _explain_two_sided(name, bids, asks, reserve, seed)
    _check_setters(recs, reserve)


# -- payment = price per unit x attention; the page share is another quantity


@pytest.mark.parametrize("name", ONE_SIDED + MATCHING)
@given(
    bids=_bids,
    k=st.integers(1, 4),
    reserve=st.sampled_from([0.0, 0.3]),
    seed=st.integers(0, 99),
)
# all values 0: a matching may leave the top slot empty (found by hypothesis)
@example(bids=[0.0, 0.0], k=3, reserve=0.0, seed=0)
@settings(max_examples=40, deadline=None)
def test_payment_is_price_times_the_slots_attention(name, bids, k, reserve, seed):
    # the attention a winner is charged for is its slot's alpha, not its share
    # of the page: payment = (setters' price) x alpha[slot], share = alpha / page
    if name == "second_price":
        k = 1
    if name == "assignment":
        reserve = 0.0
    alpha = np.sort(np.random.default_rng(seed).uniform(0.1, 1.0, k))[::-1]
    out, recs = _explain_one_sided(name, bids, alpha, reserve, seed)
    page = page_attention(alpha, len(bids))
    assert page == pytest.approx(alpha[: len(bids)].sum())
    for r, paid in zip(recs, out.pay[0], strict=True):
        assert r["payment"] == pytest.approx(paid)
        assert r["attention_share"] * page == pytest.approx(r["attention"])
        if r["slot"] is None:
            assert r["attention"] == 0.0 and r["payment"] == pytest.approx(0.0)
            continue
        assert r["attention"] == pytest.approx(alpha[r["slot"]])
        assert r["payment"] == pytest.approx(r["price"] * alpha[r["slot"]])
        assert r["payment"] == pytest.approx(
            setter_price(r["price_setters"]) * alpha[r["slot"]], abs=1e-12
        )


def _figures(row: list[str], head: list[str]) -> dict[str, float]:
    return {
        h: float(c)
        for h, c in zip(head, row, strict=True)
        if h != "agent" and c.replace(".", "").isdigit()
    }


@pytest.mark.parametrize("name", ("gsp", "vcg", "first_price", "stable_matching"))
@pytest.mark.parametrize("seed", range(5))
def test_printed_payment_is_printed_price_times_printed_attention(name, seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(2, 6)), int(rng.integers(1, 4))
    alpha = np.sort(rng.uniform(0.2, 1.0, k))[::-1]
    _, recs = _explain_one_sided(name, rng.uniform(0, 1, n), alpha, 0.0, seed)
    ex = {"records": recs, "page_attention": page_attention(alpha, n)}
    head, rows = explain_rows(ex)
    assert head[4:8] == ["attention", "page share", "price / unit", "payment"]
    half = 0.5e-4  # rounding of a figure printed to 4 decimals
    for row in rows:
        f = _figures(row, head)
        x, p = f["attention"], f["price / unit"]
        assert abs(f["payment"] - p * x) <= half * (1 + x + p) + 1e-12, row
        share = f["page share"] * ex["page_attention"]
        assert abs(share - x) <= 0.5e-3 * ex["page_attention"] + half, row
    note = explain_note(ex)
    assert "payment = price / unit x attention" in note
    assert f"({ex['page_attention']:.4f})" in note


def test_two_sided_rows_say_units_traded():
    _, recs = _explain_two_sided("k_double", [0.9, 0.7, 0.3], [0.1, 0.5, 0.8])
    head, rows = explain_rows({"records": recs})
    assert "units" in head and "page share" not in head
    for row in rows:
        f = _figures(row, head)
        assert f["payment"] == pytest.approx(f["price / unit"] * f["units"], abs=1e-4)
    assert "units traded" in explain_note({"records": recs})


# -- every command's --help: argparse's % escapes printed as the user should see


def _commands(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    """The words of every command and subcommand (``()``: the program itself)."""
    out = [words]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _commands(sub, (*words, name))
    return out


def test_every_help_prints_percent_signs_once(capsys):
    commands = _commands(build_parser())
    assert {("explain",), ("audit",), ("compare",), ("simulate",)} <= set(commands)
    for words in commands:
        with pytest.raises(SystemExit) as stop:
            main([*words, "--help"])
        assert stop.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: attn-market"), words
        assert "%%" not in out and "%(" not in out, (words, out)
        if words == ("explain",):
            assert "round I % rounds" in " ".join(out.split())
