"""The bank key names the model by content: copies and touches keep it, bytes don't."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from attn_env.valuations.bank_settings import BankSettings, bank_key
from attn_env.valuations.cache import file_digest
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
