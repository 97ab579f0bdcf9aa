"""Hostile attention banks, corpora and probe files: one ``UserError`` line each.

Issue 19: a bank named by ``bank_path`` (or found in a shared cache) is input
a user hands in. Each case here gave a traceback or a hang before (a list as
``manifest.json``: AttributeError; a 1-D ``alpha.npy``: IndexError; a fifo:
a hang; a complex ``relevance_raw``: silently cut to its real part) and must
now end in one line naming the file (and the field), before any draw. The
banks are made with numpy alone (no model), so every test is fast.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attn_env.errors import ConfigError, UserError
from attn_env.valuations import make_source
from attn_env.valuations.bank import ARRAYS, load_bank, map_relevance
from attn_env.valuations.corpus_io import load_corpus
from attn_env.valuations.probes import load_probe

N_Q, N_C, N_P, K_MAX = 4, 5, 2, 3


def _alpha(rng: np.random.Generator) -> np.ndarray:
    """``[Q, P, K, K]`` alpha: row K-1 holds K shares, descending, summing to 1."""
    alpha = np.zeros((N_Q, N_P, K_MAX, K_MAX), dtype=np.float32)
    for k in range(1, K_MAX + 1):
        shares = rng.dirichlet(np.ones(k), size=(N_Q, N_P))
        alpha[:, :, k - 1, :k] = -np.sort(-shares, axis=-1)
    return alpha


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """The six arrays of a valid bank of ``N_Q`` queries, as a build writes them."""
    rng = np.random.default_rng(seed)
    cands = np.stack([rng.permutation(20)[:N_C] for _ in range(N_Q)])
    return {
        "queries": np.arange(N_Q, dtype=np.int32),
        "candidates": cands.astype(np.int32),
        "own": rng.random((N_Q, N_C)) < 0.3,
        "relevance_raw": rng.uniform(0.1, 0.9, (N_Q, N_C)).astype(np.float32),
        "page_candidates": cands[:, None, :K_MAX].repeat(N_P, axis=1).astype(np.int32),
        "alpha": _alpha(rng),
    }


def _write_bank(folder: Path, manifest: Any = None, **replace: Any) -> Path:
    """A bank folder; ``replace`` swaps arrays (``None``: leave the file out)."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {**_arrays(), **replace}
    for name in ARRAYS:
        if arrays[name] is not None:
            np.save(folder / f"{name}.npy", arrays[name], allow_pickle=True)
    doc = {"format": 1, "corpus_hash": "x" * 64} if manifest is None else manifest
    (folder / "manifest.json").write_text(json.dumps(doc))
    return folder


def _refused(call: Callable[[], Any], *fragments: str, seconds: float = 10.0) -> str:
    """The message of the ``UserError`` ``call`` raises within ``seconds``.

    Run in a thread so that a read that blocks (a fifo) fails the test instead
    of hanging it; each fragment must be in the message, which is one line.
    """
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(call)
    try:
        err = future.exception(timeout=seconds)
    except concurrent.futures.TimeoutError:
        pytest.fail(f"still running after {seconds} s: a read blocks")
    finally:
        pool.shutdown(wait=False)
    assert isinstance(err, UserError), f"expected UserError, got {err!r}"
    msg = str(err)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


def _unblock(fifo: Path) -> None:
    """Open ``fifo`` for writing once, so a reader stuck on it (a failed test) ends."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(fd)


# ------------------------------------------------------------------ good bank


def test_a_valid_bank_loads_with_its_shapes(tmp_path: Path) -> None:
    bank = load_bank(_write_bank(tmp_path / "bank"))
    assert (bank.n_queries, bank.candidates_per_query) == (N_Q, N_C)
    assert (bank.pages, bank.max_slots) == (N_P, K_MAX)
    np.testing.assert_array_equal(bank.alpha, _arrays()["alpha"])
    src = make_source("attention", bank_path=str(bank.path), relevance="max")
    d = src.draw(np.random.default_rng(0), 50, 3, 2)
    assert d.relevance.max() <= 1.0 and d.alpha.shape == (50, 2)


# -------------------------------------------------------------- the manifest


@pytest.mark.parametrize(
    ("manifest", "fragment"),
    [
        ([], "expected a JSON object, got list"),
        ("bank", "expected a JSON object, got str"),
        ({}, "field 'format' must be 1, got None"),
        ({"format": True}, "field 'format' must be 1, got True"),
        ({"format": 1.0}, "field 'format' must be 1, got 1.0"),
        ({"format": 2}, "field 'format' must be 1, got 2"),
        ({"format": 1, "corpus_hash": 7}, "field 'corpus_hash' must be a string"),
        ({"format": 1, "settings": []}, "field 'settings' must be an object"),
        ({"format": 1, "sequences": -1}, "field 'sequences' must be an integer >= 0"),
        ({"format": 1, "sequences": False}, "field 'sequences' must be an integer"),
        ({"format": 1, "seconds": "1"}, "field 'seconds' must be a number >= 0"),
    ],
)
def test_a_bad_manifest_is_named_with_its_field(
    tmp_path: Path, manifest: Any, fragment: str
) -> None:
    folder = _write_bank(tmp_path / "bank", manifest=manifest)
    _refused(lambda: load_bank(folder), "manifest.json", fragment)


def test_a_manifest_of_nan_or_deep_nesting_is_refused(tmp_path: Path) -> None:
    folder = _write_bank(tmp_path / "bank")
    (folder / "manifest.json").write_text('{"format": 1, "seconds": NaN}')
    _refused(lambda: load_bank(folder), "manifest.json", "NaN")
    (folder / "manifest.json").write_text("[" * 5000 + "]" * 5000)
    _refused(lambda: load_bank(folder), "manifest.json", "nests 5000 levels")


def test_a_missing_bank_or_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_bank(tmp_path / "nothing")
    folder = _write_bank(tmp_path / "bank", alpha=None)
    with pytest.raises(FileNotFoundError, match="alpha"):
        load_bank(folder)
    (folder / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no manifest\.json"):
        load_bank(folder)
    (tmp_path / "file").write_text("x")
    _refused(lambda: load_bank(tmp_path / "file"), "is a folder, this is not one")


# ----------------------------------------------------------------- the arrays


@pytest.mark.parametrize(
    ("name", "array", "fragments"),
    [
        ("alpha", np.ones(3, dtype=np.float32), ("alpha.npy", "expected 4 axes")),
        ("queries", np.zeros((N_Q, 1), np.int32), ("queries.npy", "expected 1 axes")),
        (
            "relevance_raw",
            np.full((N_Q, N_C), 0.5 + 0.25j, dtype=np.complex64),
            ("relevance_raw.npy", "dtype must be real floats", "complex64"),
        ),
        (
            "relevance_raw",
            np.ones((N_Q, N_C), dtype=np.int32),
            ("relevance_raw.npy", "dtype must be real floats"),
        ),
        (
            "own",
            np.ones((N_Q, N_C), dtype=np.float32),
            ("own.npy", "dtype must be booleans"),
        ),
        (
            "candidates",
            np.ones((N_Q, N_C), dtype=np.float64),
            ("candidates.npy", "dtype must be integers"),
        ),
        (
            "alpha",
            np.zeros((N_Q, N_P, K_MAX, K_MAX), dtype=[("a", "f4")]),
            ("alpha.npy", "dtype must be real floats"),
        ),
        (
            "relevance_raw",
            np.array([[object()] * N_C] * N_Q, dtype=object),
            ("relevance_raw.npy", "not a readable .npy array"),
        ),
    ],
)
def test_an_array_of_the_wrong_kind_or_rank_is_named(
    tmp_path: Path, name: str, array: np.ndarray, fragments: tuple[str, ...]
) -> None:
    folder = _write_bank(tmp_path / "bank", **{name: array})
    _refused(lambda: load_bank(folder), *fragments)


def test_a_file_that_is_not_npy_or_is_cut_short_is_named(tmp_path: Path) -> None:
    folder = _write_bank(tmp_path / "bank")
    (folder / "own.npy").write_bytes(b"not an array at all")
    _refused(lambda: load_bank(folder), "own.npy", "not a readable .npy array")
    data = (folder / "alpha.npy").read_bytes()
    _write_bank(folder)
    (folder / "alpha.npy").write_bytes(data[: len(data) // 2])
    _refused(lambda: load_bank(folder), "alpha.npy", "not a readable .npy array")


@pytest.mark.parametrize(
    ("replace", "fragments"),
    [
        (
            {"relevance_raw": np.ones((N_Q, N_C + 1), np.float32)},
            ("relevance_raw.npy", "disagrees with candidates.npy", "C = 6 here, 5"),
        ),
        (
            {"own": np.ones((N_Q + 1, N_C), bool)},
            ("own.npy", "disagrees with queries.npy", "Q = 5 here, 4"),
        ),
        (
            {"alpha": np.ones((N_Q, N_P + 1, K_MAX, K_MAX), np.float32)},
            ("alpha.npy", "disagrees with page_candidates.npy", "P = 3 here, 2"),
        ),
        (
            {"alpha": np.ones((N_Q, N_P, K_MAX, K_MAX - 1), np.float32)},
            ("alpha.npy", "Kmax = 2 here, 3"),
        ),
        (
            {
                "queries": np.zeros(0, np.int32),
                "candidates": np.zeros((0, N_C), np.int32),
            },
            ("queries.npy", "axis Q is empty"),
        ),
        (
            {
                "page_candidates": np.zeros((N_Q, N_P, N_C + 1), np.int32),
                "alpha": np.zeros((N_Q, N_P, N_C + 1, N_C + 1), np.float32),
            },
            ("alpha.npy", "Kmax = 6 slots exceed the C = 5 candidates"),
        ),
    ],
)
def test_shapes_that_disagree_between_arrays_are_named(
    tmp_path: Path, replace: dict, fragments: tuple[str, ...]
) -> None:
    folder = _write_bank(tmp_path / "bank", **replace)
    _refused(lambda: load_bank(folder), *fragments)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", ["relevance_raw", "alpha"])
def test_non_finite_entries_are_named(tmp_path: Path, name: str, bad: float) -> None:
    arr = _arrays()[name].copy()
    arr.reshape(-1)[-1] = bad
    idx = np.unravel_index(arr.size - 1, arr.shape)
    folder = _write_bank(tmp_path / "bank", **{name: arr})
    _refused(
        lambda: load_bank(folder),
        f"{name}.npy",
        "1 non-finite value(s)",
        f"at index {tuple(int(i) for i in idx)}",
    )


def test_values_out_of_range_are_named(tmp_path: Path) -> None:
    raw = _arrays()["relevance_raw"].copy()
    raw[2, 1] = -0.5
    folder = _write_bank(tmp_path / "a", relevance_raw=raw)
    _refused(lambda: load_bank(folder), "relevance_raw.npy", "negative value -0.5")
    alpha = _arrays()["alpha"].copy()
    alpha[1, 0, 1, :2] = [0.7, 0.7]
    folder = _write_bank(tmp_path / "b", alpha=alpha)
    _refused(lambda: load_bank(folder), "alpha.npy", "2-slot page of query 1, layout 0")
    alpha = _arrays()["alpha"].copy()
    alpha[0, 1, 1, :2] = [0.25, 0.75]
    folder = _write_bank(tmp_path / "c", alpha=alpha)
    _refused(lambda: load_bank(folder), "alpha.npy", "not sorted descending")
    alpha = _arrays()["alpha"].copy()
    alpha[0, 0, 0, 2] = 0.5
    folder = _write_bank(tmp_path / "d", alpha=alpha)
    _refused(lambda: load_bank(folder), "alpha.npy", "nonzero alpha past slot 1")
    cands = _arrays()["candidates"].copy()
    cands[3, 4] = -2
    folder = _write_bank(tmp_path / "e", candidates=cands)
    _refused(lambda: load_bank(folder), "candidates.npy", "negative index")


def test_relevance_max_refuses_a_row_with_nothing_above_zero(tmp_path: Path) -> None:
    raw = _arrays()["relevance_raw"].copy()
    raw[3] = 0.0
    folder = _write_bank(tmp_path / "bank", relevance_raw=raw)
    bank = load_bank(folder)  # 0 is a valid r_raw; only the max map cannot use it
    assert np.allclose(map_relevance(bank.relevance_raw, "logistic")[3], 0.5)
    _refused(
        lambda: make_source("attention", bank_path=str(folder), relevance="max"),
        "relevance 'max'",
        "query row 3",
    )


# ------------------------------------------------------- file kinds and links


@pytest.mark.parametrize("name", [*ARRAYS, "manifest"])
def test_a_fifo_for_any_file_is_refused_without_a_hang(
    tmp_path: Path, name: str
) -> None:
    folder = _write_bank(tmp_path / "bank")
    file = folder / (f"{name}.npy" if name != "manifest" else "manifest.json")
    file.unlink()
    os.mkfifo(file)
    try:
        _refused(lambda: load_bank(folder), file.name, "is a fifo", seconds=5)
    finally:
        _unblock(file)


@pytest.mark.parametrize("name", ["alpha.npy", "manifest.json"])
def test_a_symlink_out_of_the_bank_folder_is_refused(tmp_path: Path, name: str) -> None:
    other = _write_bank(tmp_path / "other")
    folder = _write_bank(tmp_path / "bank")
    (folder / name).unlink()
    (folder / name).symlink_to(other / name)  # a valid file, but outside
    _refused(lambda: load_bank(folder), name, "leads outside")
    (folder / name).unlink()
    (folder / name).symlink_to("/dev/zero")
    _refused(lambda: load_bank(folder), name, "is a device")


def test_links_inside_the_folder_and_a_linked_folder_are_fine(tmp_path: Path) -> None:
    folder = _write_bank(tmp_path / "bank")
    (folder / "alpha.npy").rename(folder / "alpha-data.npy")
    (folder / "alpha.npy").symlink_to("alpha-data.npy")
    (tmp_path / "link").symlink_to(folder)
    assert load_bank(tmp_path / "link").max_slots == K_MAX


def test_an_oversized_array_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import attn_env.valuations.bank_check as bank_check

    folder = _write_bank(tmp_path / "bank")
    size = (folder / "alpha.npy").stat().st_size
    monkeypatch.setattr(bank_check, "MAX_ARRAY_BYTES", size - 1)
    _refused(lambda: load_bank(folder), "alpha.npy", f"{size:,} bytes, over the cap")


# ------------------------------------------------------ the source around it


def test_bank_path_and_folders_must_be_path_strings(tmp_path: Path) -> None:
    for option in ("bank_path", "corpus", "bank_dir", "model_dir"):
        with pytest.raises(ConfigError, match=f"{option} must be a folder path"):
            make_source("attention", **{option: 5})
    with pytest.raises(ConfigError, match="bank_path must be a folder path"):
        make_source("attention", bank_path="  ")


def test_a_bank_naming_the_corpus_with_indices_past_it_is_refused(
    tmp_path: Path,
) -> None:
    corpus = load_corpus()  # the shipped one
    cands = _arrays()["candidates"].copy()
    cands[0, 0] = len(corpus.cand_ids)  # one past the last candidate
    manifest = {"format": 1, "corpus_hash": corpus.content_hash}
    folder = _write_bank(tmp_path / "bank", manifest=manifest, candidates=cands)
    _refused(
        lambda: make_source("attention", bank_path=str(folder)),
        "candidates.npy",
        f"candidate index {len(corpus.cand_ids)} is past the corpus's",
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    name=st.sampled_from([*ARRAYS, "manifest"]),
    edits=st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6
    ),
    cut=st.one_of(st.none(), st.integers(0, 400)),
)
def test_any_corrupted_bank_loads_sane_or_is_refused_in_one_line(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    edits: list[tuple[int, int]],
    cut: int | None,
) -> None:
    """Random bytes overwritten in (or a cut of) one file: a sane bank or a UserError.

    A bank that still loads must hold what every draw relies on: finite
    values, alpha pages that sum to 1, and shapes that agree.
    """
    folder = _write_bank(tmp_path_factory.mktemp("fuzz") / "bank")
    file = folder / (f"{name}.npy" if name != "manifest" else "manifest.json")
    data = bytearray(file.read_bytes())
    for offset, value in edits:
        data[offset % len(data)] = value
    file.write_bytes(bytes(data if cut is None else data[:cut]))
    try:
        bank = load_bank(folder)
    except UserError as err:
        assert "\n" not in str(err) and str(folder) in str(err)
        return
    alpha = np.asarray(bank.alpha, dtype=np.float64)
    assert np.isfinite(alpha).all() and np.isfinite(bank.relevance_raw).all()
    for k in range(1, bank.max_slots + 1):
        np.testing.assert_allclose(alpha[:, :, k - 1, :k].sum(-1), 1.0, atol=1e-3)
    assert bank.relevance_raw.shape == bank.candidates.shape == bank.own.shape
    assert bank.alpha.shape[:3] == bank.page_candidates.shape


# ----------------------------------------------------------------- a corpus


def _write_corpus(folder: Path, queries: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"q{i}", "text": f"query {i}", "vertical": "v"} for i in range(3)]
    default = "".join(json.dumps(r) + "\n" for r in rows)
    (folder / "queries.jsonl").write_text(default if queries is None else queries)
    (folder / "candidates.jsonl").write_text(
        json.dumps({"id": "c0", "text": "an ad", "vertical": "v"}) + "\n"
    )
    return folder


def test_a_corpus_hash_is_the_sha256_of_both_files(tmp_path: Path) -> None:
    folder = _write_corpus(tmp_path / "c")
    corpus = load_corpus(folder)
    expected = hashlib.sha256(
        (folder / "queries.jsonl").read_bytes()
        + (folder / "candidates.jsonl").read_bytes()
    ).hexdigest()
    assert corpus.content_hash == expected
    assert corpus.query_ids == ["q0", "q1", "q2"] and corpus.cand_ids == ["c0"]


GOOD = json.dumps({"id": "a", "text": "t", "vertical": "v"})


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (f"{GOOD}\n[]\n", (":2:", "expected an object", "got list")),
        (f'{GOOD}\n\n"row"\n', (":3:", "got str")),
        (f"{GOOD}\n{{nope\n", (":2:", "not valid JSON")),
        (
            '{"id": "b", "text": "t", "vertical": "v", "w": NaN}\n',
            (":1:", "not valid JSON", "NaN"),
        ),
        (GOOD + "\n" + "[" * 100_000 + "\n", (":2:", "nests deeper than 8 levels")),
        (
            '{"id": "b", "text": 3, "vertical": "v"}\n',
            (":1:", "non-empty string 'text'", "got 3"),
        ),
        (
            '{"id": "b", "text": "' + "x" * 500 + '"}\n',
            (":1:", "'vertical'", "got None"),
        ),
        (f"{GOOD}\n{GOOD}\n", (":2:", "duplicate id 'a'")),
        ("\n\n", ("no rows",)),
    ],
)
def test_a_bad_corpus_line_is_named_with_its_number(
    tmp_path: Path, text: str, fragments: tuple[str, ...]
) -> None:
    folder = _write_corpus(tmp_path / "c", queries=text)
    msg = _refused(lambda: load_corpus(folder), "queries.jsonl", *fragments)
    assert len(msg) < 300


def test_a_corpus_line_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    folder = _write_corpus(tmp_path / "c")
    (folder / "queries.jsonl").write_bytes(
        (GOOD + "\n" + GOOD.replace('"a"', '"b"') + "\n").encode() + b'{"id": "\xff"}\n'
    )
    _refused(lambda: load_corpus(folder), "queries.jsonl:3:", "not UTF-8")


def test_a_corpus_file_that_is_a_fifo_link_out_or_too_big_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import attn_env.valuations.corpus_io as corpus_io

    folder = _write_corpus(tmp_path / "c")
    outside = _write_corpus(tmp_path / "elsewhere")
    (folder / "queries.jsonl").unlink()
    (folder / "queries.jsonl").symlink_to(outside / "queries.jsonl")
    _refused(lambda: load_corpus(folder), "queries.jsonl", "leads outside")
    (folder / "queries.jsonl").unlink()
    os.mkfifo(folder / "queries.jsonl")
    try:
        _refused(lambda: load_corpus(folder), "queries.jsonl", "is a fifo", seconds=5)
    finally:
        _unblock(folder / "queries.jsonl")
    (folder / "queries.jsonl").unlink()
    _write_corpus(folder)
    size = (folder / "queries.jsonl").stat().st_size
    monkeypatch.setattr(corpus_io, "MAX_CORPUS_BYTES", size - 1)
    _refused(lambda: load_corpus(folder), "queries.jsonl", f"{size:,} bytes, over")
    _refused(lambda: load_corpus(folder / "queries.jsonl"), "a corpus is a folder")


# ------------------------------------------------------------------- probes


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("[]", ("expected an object with a non-empty 'items'",)),
        ('{"items": []}', ("non-empty 'items'",)),
        ('{"items": [1]}', ("item 0", "an item must be an object, got int")),
        ('{"items": [{"id": "a", "vertical": "v"}]}', ("item 0", "'query'")),
        ('{"name": 3, "items": [{}]}', ("'name' must be a string",)),
        ('{"items": [{"id": NaN}]}', ("not valid JSON", "NaN")),
        (
            '{"items": [{"id": "a", "vertical": "v", "query": "q", "positives": [1]}]}',
            ("(a)", "'positives' must be a list of non-empty strings"),
        ),
        ("[" * 1000 + "]" * 1000, ("nests 1000 levels",)),
    ],
)
def test_a_bad_probe_file_is_named(
    tmp_path: Path, content: str, fragments: tuple[str, ...]
) -> None:
    path = tmp_path / "probe.json"
    path.write_text(content)
    _refused(lambda: load_probe(path), "probe.json", *fragments)


def test_a_probe_file_that_is_missing_or_a_fifo_is_refused(tmp_path: Path) -> None:
    _refused(lambda: load_probe(tmp_path / "none.json"), "no probe file")
    fifo = tmp_path / "probe.json"
    os.mkfifo(fifo)
    try:
        _refused(lambda: load_probe(fifo), "probe.json", "is a fifo", seconds=5)
    finally:
        _unblock(fifo)
    assert len(load_probe("dev").items) == 64  # the shipped sets still load
