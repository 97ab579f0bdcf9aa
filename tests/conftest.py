"""Fixtures shared by several test files."""

from __future__ import annotations

import pytest


@pytest.fixture
def restore_torch_threads():
    """``train`` sets torch's thread count process-wide; leave other tests theirs."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory):
    """A randomly initialised 2-layer, 2-head BERT + the real MiniLM tokenizer, saved.

    It stands in for MiniLM where a test needs the attention path, not its numbers.
    """
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer, BertConfig, BertModel

    from attn_env.valuations.model import default_model_dir

    folder = tmp_path_factory.mktemp("tiny_bert")
    tok = AutoTokenizer.from_pretrained(str(default_model_dir()), local_files_only=True)
    torch.manual_seed(0)
    cfg = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=tok.vocab_size,
        attn_implementation="eager",
    )
    BertModel(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    """The tiny BERT of ``tiny_dir`` loaded on the CPU."""
    from attn_env.valuations.model import load_model

    return load_model(tiny_dir, device="cpu")
