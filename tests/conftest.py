"""Fixtures shared by several test files."""

from __future__ import annotations

import os
import re
import sys

import pytest

OFF_BY_DEFAULT = ("slow", "gpu")
"Markers deselected unless the ``-m`` expression names them (see below)."


def off_by_default(markexpr: str, markers: set[str]) -> str | None:
    """The off-by-default marker among ``markers`` that ``markexpr`` does not name."""
    named = set(re.findall(r"\w+", markexpr))
    for marker in OFF_BY_DEFAULT:
        if marker in markers and marker not in named:
            return marker
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    """Keep ``slow`` and ``gpu`` off under any ``-m`` that does not name them.

    ``addopts`` deselects them with ``-m 'not slow and not gpu'``, but a second
    ``-m`` on the command line replaces that expression: ``pytest -m "not
    integration"`` (the fast local loop) would otherwise run every slow test.
    ``-m slow`` or ``-m gpu`` still selects them.
    """
    markexpr = config.getoption("markexpr") or ""
    kept, dropped = [], []
    for item in items:
        markers = {m.name for m in item.iter_markers()}
        (dropped if off_by_default(markexpr, markers) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="module")
def module_solver_cache(tmp_path_factory: pytest.TempPathFactory):
    """One solver cache for a test module (each game solved once), never the
    user's: ``ATTN_MARKET_CACHE`` for the module, restored afterwards."""
    old = os.environ.get("ATTN_MARKET_CACHE")
    os.environ["ATTN_MARKET_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("ATTN_MARKET_CACHE")
    else:
        os.environ["ATTN_MARKET_CACHE"] = old


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


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    """A first-price run of 1,024 agent-steps (its config, its folder), for
    the exploit tests."""
    from tests.test_exploit import fpsb
    from training import train

    config = fpsb()
    run = tmp_path_factory.mktemp("exploit") / "run"
    train(config, run, progress=False)
    return config, run


@pytest.fixture(scope="module")
def unplug_formats():
    """The formats plug-in (all-pay, war of attrition) unregistered after the
    module that loaded it: the other tests expect the built-in mechanisms only."""
    from attn_env import mechanisms

    yield
    for name in ("all_pay", "war_of_attrition"):
        mechanisms._REGISTRY.pop(name, None)
    sys.modules.pop("attn_env.solver.formats_plugin", None)
