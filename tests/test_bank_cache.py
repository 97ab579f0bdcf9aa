"""The bank key names the model by content: copies and touches keep it, bytes don't."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from attn_env.valuations.bank_settings import BankSettings, bank_key
from attn_env.valuations.cache import file_digest
from attn_env.valuations.corpus_io import Corpus
from attn_env.valuations.model import model_identity


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "banks"
    root.mkdir()
    monkeypatch.setenv("ATTN_MARKET_CACHE", str(root))
    return root


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A fake model folder: a few bytes stand in for the weights (never loaded)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "config.json").write_text('{"num_hidden_layers": 2}')
    (folder / "vocab.txt").write_text("[PAD]\n[CLS]\n[SEP]\nshoes\n")
    (folder / "README.md").write_text("not part of the identity")
    return folder


def key(folder: Path) -> str:
    return bank_key(BankSettings(), model_identity(folder), "corpus-hash")


def test_copied_or_touched_weights_keep_the_key(model: Path, cache: Path, tmp_path):
    before = key(model)
    copy = tmp_path / "reinstalled" / "model"
    shutil.copytree(model, copy)  # new path, new inodes, new mtimes
    os.utime(copy / "model.safetensors", ns=(1, 1))
    (copy / "README.md").write_text("edited docs")
    assert key(copy) == before
    os.utime(model / "model.safetensors")  # touch in place
    assert key(model) == before


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "vocab.txt"])
def test_changed_bytes_change_the_key(model: Path, cache: Path, name: str):
    before = key(model)
    path = model / name
    data = bytearray(path.read_bytes())
    data[3] ^= 1
    st = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime
    assert key(model) != before


def test_the_digest_is_remembered_per_file_version(model: Path, cache: Path):
    weights = model / "model.safetensors"
    digest = file_digest(weights)
    memos = list((cache / ".digests").iterdir())
    assert len(memos) == 1
    assert memos[0].read_text().strip() == digest
    # a later call reads the memo instead of the file
    memos[0].write_text("ab" * 32 + "\n")
    assert file_digest(weights) == "ab" * 32
    # a corrupt memo is ignored and the bytes are hashed again
    memos[0].write_text("not a digest")
    assert file_digest(weights) == digest


def test_no_memo_and_no_folder_where_the_cache_does_not_exist(model: Path, tmp_path):
    missing = tmp_path / "no-such-cache"
    digest = file_digest(model / "model.safetensors", cache_dir=missing)
    assert len(digest) == 64
    assert not missing.exists()


def test_a_folder_without_safetensors_is_refused(model: Path, cache: Path):
    (model / "model.safetensors").unlink()
    (model / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(FileNotFoundError, match=r"no \.safetensors weights"):
        model_identity(model)


def test_a_fifo_as_digest_memo_is_skipped_not_read(model: Path, cache: Path):
    weights = model / "model.safetensors"
    digest = file_digest(weights)
    memo = next((cache / ".digests").iterdir())
    memo.unlink()
    os.mkfifo(memo)  # a read would block for ever
    assert file_digest(weights) == digest


# ------------------------------------------------------------- shipped banks


def _shipped() -> list[tuple[str, BankSettings, str, Corpus]]:
    """(where used, settings, key, corpus) of every bank that ships, for today."""
    from attn_env.valuations.shipped_banks import (
        SHIPPED,
        load_named_corpus,
        shipped_entry,
    )

    model_id, out = model_identity(), []
    for name in SHIPPED:
        corpus_name, s = shipped_entry(name)
        corpus = load_named_corpus(corpus_name)
        out.append((name, s, bank_key(s, model_id, corpus.content_hash), corpus))
    return out


def test_every_shipped_bank_matches_todays_model_corpus_and_settings(cache: Path):
    # Fails while a shipped bank is stale (corpus, model pin, format or settings
    # changed): `python -m attn_env.valuations.shipped_banks` rebuilds them.
    from attn_env.valuations.bank import load_bank
    from attn_env.valuations.shipped_banks import shipped_bank, shipped_bank_dir

    shipped = _shipped()
    folders = sorted(p.name for p in shipped_bank_dir().iterdir())
    assert folders == sorted(key for _, _, key, _ in shipped)
    for name, settings, key, corpus in shipped:
        bank = load_bank(shipped_bank(key))  # every hostile-bank check passes
        m = bank.manifest
        assert m["key"] == key and m["model"] == model_identity(), name
        assert m["corpus_hash"] == corpus.content_hash
        assert m["settings"] == json.loads(json.dumps(settings.to_params()))
        n_q = settings.n_queries or len(corpus.query_ids)
        assert bank.relevance_raw.shape == (n_q, settings.candidates_per_query)
        k = settings.max_slots
        assert bank.alpha.shape == (n_q, settings.pages, k, k)


def test_shipped_banks_are_small_and_named_in_package_data() -> None:
    import fnmatch
    import tomllib

    from attn_env.valuations.shipped_banks import shipped_bank_dir

    root = Path(__file__).resolve().parents[1]
    files = [p for p in shipped_bank_dir().rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 5 * 2**20  # search_day: 0.75 MB
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["attn_env.valuations"]
    package = root / "attn_env" / "valuations"
    for f in files:  # each file matched by a glob, so a wheel carries it
        rel = f.relative_to(package).as_posix()
        assert any(fnmatch.fnmatchcase(rel, g) for g in globs), rel


def test_the_default_bank_is_found_shipped_without_loading_the_model(
    cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    import attn_env.valuations.model as model_module
    from attn_env.valuations import make_source
    from attn_env.valuations.bank import find_bank
    from attn_env.valuations.bank_build import build_bank
    from attn_env.valuations.corpus_io import load_corpus
    from attn_env.valuations.shipped_banks import shipped_bank_dir

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded although a bank ships")

    monkeypatch.setattr(model_module, "load_model", never)
    corpus = load_corpus()
    found = find_bank(BankSettings(), model_identity(), corpus.content_hash, None)
    assert found is not None and found.parent == shipped_bank_dir()
    assert build_bank(BankSettings(), corpus, progress=False) == found
    src = make_source("attention")  # the README snippet's source, empty cache
    assert src.bank.path == found
    assert "building" not in capsys.readouterr().err
    assert {p.name for p in cache.iterdir()} <= {".digests"}  # nothing built
    # another model's bytes: another key, nothing shipped for it
    assert find_bank(BankSettings(), "other-model", corpus.content_hash, None) is None
    # a bank in the cache under the same key wins over the shipped one
    mine = cache / found.name
    shutil.copytree(found, mine)
    again = find_bank(BankSettings(), model_identity(), corpus.content_hash, None)
    assert again == mine


@pytest.mark.slow
@pytest.mark.real_model
def test_the_shipped_default_bank_is_what_a_build_gives(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shipped arrays were built on the CPU in fp32; a fresh build here
    # must reproduce them (to float32 rounding of the scores).
    import numpy as np

    import attn_env.valuations.bank_build as bank_build
    from attn_env.valuations.bank import load_bank
    from attn_env.valuations.corpus_io import load_corpus
    from attn_env.valuations.model import load_model
    from attn_env.valuations.shipped_banks import shipped_bank

    settings, corpus = BankSettings(), load_corpus()
    lm = load_model(device="cpu")
    key = bank_key(settings, lm.identity, corpus.content_hash)
    shipped = load_bank(shipped_bank(key))
    monkeypatch.setattr(bank_build, "shipped_bank", lambda key: None)  # build it
    fresh = load_bank(
        bank_build.build_bank(settings, corpus, lm, bank_dir=cache, progress=False)
    )
    assert fresh.path.parent == cache
    for name in ("queries", "candidates", "own", "page_candidates"):
        np.testing.assert_array_equal(getattr(fresh, name), getattr(shipped, name))
    for name in ("relevance_raw", "alpha"):
        np.testing.assert_allclose(
            getattr(fresh, name), getattr(shipped, name), atol=1e-5
        )


def test_a_bank_dir_that_is_a_file_is_refused_though_a_bank_ships(tmp_path: Path):
    from attn_env.errors import UserError
    from attn_env.valuations.bank import find_bank
    from attn_env.valuations.bank_build import build_bank
    from attn_env.valuations.corpus_io import load_corpus

    plain = tmp_path / "plainfile"
    plain.write_text("x")
    corpus = load_corpus()
    with pytest.raises(UserError, match="plainfile' is not a folder"):
        find_bank(BankSettings(), model_identity(), corpus.content_hash, plain)
    with pytest.raises(UserError, match="plainfile' is not a folder"):
        build_bank(BankSettings(), corpus, bank_dir=plain, progress=False)
    missing = tmp_path / "not-yet"  # a folder a build would make: fine
    assert find_bank(BankSettings(), model_identity(), corpus.content_hash, missing)
