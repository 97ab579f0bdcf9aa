"""A user's own search-day files: bad rows and entries end in one line naming them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attn_env.errors import UserError
from attn_env.scenarios.search_data import load_search_data


def _write(folder, ads=None, advertisers=None, queries=None):
    queries = queries or [
        {"id": f"q{i}", "text": f"query {i}", "vertical": v}
        for i, v in enumerate(["shoes", "travel"])
    ]
    ads = ads or [
        {"id": f"a{i}", "text": f"ad {i}", "vertical": "shoes" if i % 2 else "travel"}
        for i in range(6)
    ]
    advertisers = advertisers or (
        "- {name: acme, verticals: [shoes], value_per_conversion: 40, target_cpa: 30, budget: 500}\n"
        "- {name: bolt, verticals: [travel, shoes], value_per_conversion: 60, target_cpa: 45, budget: 900}\n"
    )
    (folder / "queries.jsonl").write_text(
        "\n".join(json.dumps(r) for r in queries) + "\n"
    )
    (folder / "ads.jsonl").write_text("\n".join(json.dumps(r) for r in ads) + "\n")
    (folder / "advertisers.yaml").write_text(advertisers)


def test_good_files_load_and_owners_follow_the_rows(tmp_path):
    ads = [
        {"id": "a0", "text": "ad 0", "vertical": "shoes", "advertiser": "acme"},
        {"id": "a1", "text": "ad 1", "vertical": "travel"},
        {"id": "a2", "text": "ad 2", "vertical": "shoes", "advertiser": "bolt"},
    ]
    _write(tmp_path, ads=ads)
    corpus, adv = load_search_data(tmp_path, np.random.default_rng(0))
    assert adv.names == ["acme", "bolt"]
    assert list(adv.ad_owner) == [0, 1, 1]  # travel: only bolt sells there
    np.testing.assert_array_equal(adv.budget, [500.0, 900.0])
    assert len(corpus.query_ids) == 2


@pytest.mark.parametrize(
    ("ads", "advertisers", "match"),
    [
        (
            [
                {"id": "a0", "text": "x", "vertical": "travel"},
                {"id": "a1", "text": "y", "vertical": "shoes", "advertiser": "zed"},
            ],
            None,
            r"ads.jsonl:2: advertiser 'zed' is not in advertisers.yaml",
        ),
        (
            [
                {"id": "a0", "text": "x", "vertical": "shoes"},
                {"id": "a1", "text": "y", "vertical": "travel", "advertiser": "acme"},
            ],
            None,
            r"ads.jsonl:2: advertiser 'acme' does not sell in vertical 'travel'",
        ),
        (
            None,
            "- {name: acme, verticals: [shoes], value_per_conversion: 40, target_cpa: 30, budget: -5}\n",
            r"entry 1 \(acme\): budget must be a finite number > 0, got -5",
        ),
        (
            None,
            "- {name: acme, verticals: [boats], value_per_conversion: 40, target_cpa: 30, budget: 5}\n",
            r"entry 1 \(acme\): verticals must be",
        ),
        (
            None,
            "- {name: acme, verticals: [shoes], value: 40, target_cpa: 30, budget: 5}\n",
            r"entry 1: missing \['value_per_conversion'\]",
        ),
        (None, "acme: 3\n", "expected a non-empty list of advertisers"),
    ],
)
def test_bad_files_name_the_line_or_entry(tmp_path, ads, advertisers, match):
    _write(tmp_path, ads=ads, advertisers=advertisers)
    with pytest.raises(UserError, match=match):
        load_search_data(tmp_path, np.random.default_rng(0))


def test_a_broken_jsonl_line_is_named(tmp_path):
    _write(tmp_path)
    with open(tmp_path / "ads.jsonl", "a") as f:
        f.write('{"id": "a9", "text": "oops"\n')
    with pytest.raises(UserError, match=r"ads.jsonl:7: not valid JSON"):
        load_search_data(tmp_path, np.random.default_rng(0))
