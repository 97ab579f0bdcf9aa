"""Whose fault an error is: a bug of ours shows its traceback, a user error one line.

A bug is injected into a mechanism's ``clear`` (a ``KeyError``, and a bare
``ValueError`` as numpy would raise deep inside); the command line must print
"internal error" after the full traceback and exit 1, never pass it off as
the user's bad input.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from attn_env.mechanisms.position import FirstPrice
from attn_market.cli import main

CONFIG = "seed: 0\nenv: {mechanism: first_price, n_buyers: 2}\nepisodes: 2\n"


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "market.yaml"
    path.write_text(CONFIG)
    return str(path)


@pytest.mark.parametrize("bug", [KeyError("slot_of_winner"), ValueError("bad shape")])
def test_bug_keeps_its_traceback(bug, config, monkeypatch, capsys) -> None:
    def broken(self, *args, **kwargs):
        raise bug

    monkeypatch.setattr(FirstPrice, "clear", broken)
    code = main(["simulate", config, "--json"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback (most recent call last)" in err
    assert f"{type(bug).__name__}: " in err
    assert "in broken" in err  # the frame where the bug is
    assert "internal error" in err.splitlines()[-1]


def test_user_error_stays_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "market.yaml"
    path.write_text("env: {mechanism: first_price, n_buyers: -7}\n")
    code = main(["simulate", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert "n_buyers" in err and "-7" in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback_of_a_user_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "market.yaml"
    path.write_text("env: {mechanism: first_price, n_buyers: -7}\n")
    code = main(["simulate", str(path), "--debug"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1].startswith("attn-market simulate: error:")
