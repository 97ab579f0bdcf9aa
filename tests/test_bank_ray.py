"""The attention bank built across Ray tasks is the bank built in one process.

The Ray tests (``integration``; the failure one also ``slow``) start a local
Ray of 2 CPUs and build the small bank of ``test_valuations_bank.py`` (its
corpus and settings, the tiny random BERT of ``conftest.py``) in 2 chunks; the
others check the command line's refusals and its scenario configs without
starting Ray.
"""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from attn_env.errors import ConfigError, UserError
from attn_env.valuations.bank_settings import BankSettings, bank_key
from attn_env.valuations.corpus_io import load_corpus
from attn_market.cli import main
from runner.bank_ray import search_day_inputs, split_rows
from tests.test_valuations_bank import SETTINGS, corpus_dir  # noqa: F401 (fixture)

ARRAYS = ("queries", "candidates", "own", "page_candidates", "relevance_raw", "alpha")


def _free_port() -> int:
    """A TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------- splitting


@pytest.mark.parametrize(("n", "chunks"), [(9, 2), (9, 4), (3, 5), (1, 1), (10, 10)])
def test_rows_are_split_into_contiguous_near_equal_parts(n: int, chunks: int) -> None:
    parts = split_rows(n, chunks)
    assert len(parts) == min(n, chunks)
    assert np.array_equal(np.concatenate(parts), np.arange(n))
    sizes = [len(p) for p in parts]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


# ------------------------------------------------------------------- Ray builds


@pytest.mark.integration
def test_ray_build_is_the_single_process_bank(
    tiny,
    tiny_dir: Path,
    corpus_dir: Path,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    pytest.importorskip("ray")
    import ray

    from attn_env.valuations.bank import build_bank, load_bank
    from runner.bank_ray import build_bank_on_ray

    settings, corpus = BankSettings(**SETTINGS), load_corpus(corpus_dir)
    one = build_bank(
        settings, corpus, tiny, bank_dir=tmp_path / "one", batch_size=16, progress=False
    )
    many = build_bank_on_ray(
        settings,
        corpus,
        chunks=2,
        bank_dir=tmp_path / "ray",
        model_dir=tiny_dir,
        device="cpu",
        batch_size=16,
        progress=False,
    )
    assert not ray.is_initialized()  # the Ray it started is shut down
    key = bank_key(settings, tiny.identity, corpus.content_hash)
    assert one.name == many.name == key
    assert [p.name for p in (tmp_path / "ray").iterdir()] == [key]  # no temp left
    for name in ARRAYS:
        a, b = np.load(one / f"{name}.npy"), np.load(many / f"{name}.npy")
        assert a.dtype == b.dtype and a.shape == b.shape, name
        if name in ("relevance_raw", "alpha"):  # float rounding of other batches
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-6, err_msg=name)
        else:  # the seeded draws are the driver's: exactly the same
            assert np.array_equal(a, b), name
    m1 = json.loads((one / "manifest.json").read_text())
    m2 = json.loads((many / "manifest.json").read_text())
    assert m2["ray"] == {"address": "local", "chunks": 2}
    assert set(m2) - set(m1) == {"ray"} and set(m1) <= set(m2)
    for field in ("key", "model", "corpus_hash", "settings", "sequences", "pairs"):
        assert m1[field] == m2[field], field
    bank = load_bank(many)
    assert bank.n_queries == 9 and bank.candidates_per_query == 6
    # a second call finds the bank and starts no Ray
    again = build_bank_on_ray(
        settings, corpus, chunks=2, bank_dir=tmp_path / "ray", model_dir=tiny_dir
    )
    assert again == many and not ray.is_initialized()


@pytest.mark.integration
@pytest.mark.slow  # a second local Ray: ~20 s on 2 busy cores
def test_a_failed_chunk_ends_in_one_line_naming_it(
    tiny_dir: Path,
    corpus_dir: Path,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    pytest.importorskip("ray")
    import ray

    from runner.bank_ray import build_bank_on_ray

    # layer 3 does not exist in the tiny 2-layer model: every worker raises
    bad = BankSettings(**{**SETTINGS, "lift_heads": [[3, 1]]})
    with pytest.raises(UserError) as err:
        build_bank_on_ray(
            bad,
            load_corpus(corpus_dir),
            chunks=2,
            bank_dir=tmp_path,
            model_dir=tiny_dir,
            device="cpu",
            progress=False,
        )
    message = str(err.value)
    assert "\n" not in message
    assert re.match(
        r"bank chunk [12] of 2 \(query rows \d+-\d+\) failed on Ray: ", message
    )
    assert "lift head (layer 3, head 1)" in message
    assert not ray.is_initialized()
    assert list(tmp_path.iterdir()) == []  # no bank, no temp folder


# ------------------------------------------------------------- the command line


def _config(tmp_path: Path, **params: object) -> Path:
    """An experiment config whose bank is in no cache and not shipped."""
    path = tmp_path / "bank.yaml"
    body = {"n_queries": 3, "candidates_per_query": 5, "seed": 91, **params}
    lines = "".join(f"    {k}: {json.dumps(v)}\n" for k, v in body.items())
    path.write_text(f"env:\n  valuation: attention\n  valuation_params:\n{lines}")
    return path


def test_an_address_where_nothing_listens_ends_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("ray")
    address = f"127.0.0.1:{_free_port()}"
    started = time.perf_counter()
    code = main(
        [
            "valuations",
            "build",
            str(_config(tmp_path)),
            "--address",
            address,
            "--bank-dir",
            str(tmp_path / "banks"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert f"cannot reach a Ray cluster at {address!r}" in err
    assert time.perf_counter() - started < 30
    assert not any((tmp_path / "banks").glob("*/manifest.json"))


def test_chunks_without_an_address_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["valuations", "build", str(_config(tmp_path)), "--chunks", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--chunks" in err and "--address" in err


def test_bad_chunks_are_named(tmp_path: Path) -> None:
    from runner.bank_ray import build_bank_on_ray

    for bad in (0, -1, 2.5, True):
        with pytest.raises(
            ConfigError, match=re.escape(f"chunks must be an integer >= 1, got {bad!r}")
        ):
            build_bank_on_ray(
                BankSettings(), load_corpus(None), chunks=bad, bank_dir=tmp_path
            )


def test_the_search_day_config_finds_the_shipped_bank(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from attn_env.valuations.cache import shipped_bank_dir

    code = main(
        [
            "valuations",
            "build",
            "configs/scenarios/search_day.yaml",
            "--bank-dir",
            str(tmp_path),
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    folder = Path(out.splitlines()[0].removeprefix("attention bank: "))
    assert folder.parent == shipped_bank_dir()
    assert "2000 queries x 24 candidates" in out
    assert list(tmp_path.iterdir()) == []  # nothing built


def test_a_scenario_data_folder_gives_its_corpus_and_the_search_day_settings(
    tmp_path: Path,
) -> None:
    from attn_env.valuations.shipped_banks import shipped_entry

    data = tmp_path / "day"
    data.mkdir()
    rows = {
        "queries.jsonl": [{"id": "q1", "text": "running shoes", "vertical": "shoes"}],
        "ads.jsonl": [{"id": "a1", "text": "trail sneakers", "vertical": "shoes"}],
    }
    for name, items in rows.items():
        (data / name).write_text("".join(json.dumps(r) + "\n" for r in items))
    config = tmp_path / "day.yaml"
    config.write_text(f"scenario: search_day\ndata: {json.dumps(str(data))}\n")
    settings, corpus = search_day_inputs(config)
    assert settings == shipped_entry("search_day")[1]
    want = load_corpus(data, candidates="ads.jsonl")
    assert corpus.content_hash == want.content_hash
    assert corpus.query_texts == ["running shoes"]
    assert search_day_inputs(_config(tmp_path)) is None  # an experiment config


def test_another_scenario_is_refused_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "feed.yaml"
    config.write_text("scenario: feed\n")
    with pytest.raises(UserError, match="scenario 'feed' has no attention bank"):
        search_day_inputs(config)
