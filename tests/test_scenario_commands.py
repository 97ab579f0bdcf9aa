"""Every scenario runs every command: its command module has them all, and a
command a scenario lacked would be refused in one line naming who has it."""

from __future__ import annotations

import importlib

import pytest

from attn_env.errors import UserError
from attn_env.scenarios import names
from runner.scenario_commands import COMMANDS
from runner.scenarios import command_of

PROTOCOL = ("train", "train_summary", "evaluate", "compare", "audit")


@pytest.mark.parametrize("scenario", names())
def test_every_scenario_has_every_command(scenario):
    assert scenario in COMMANDS, f"{scenario} has no command module"
    module = importlib.import_module(COMMANDS[scenario])
    for command in PROTOCOL:
        assert callable(getattr(module, command, None)), f"{scenario}: {command}"
        assert command_of(scenario, command) is getattr(module, command)


def test_a_missing_command_is_one_line_naming_the_scenarios_that_have_it():
    with pytest.raises(
        UserError, match=r"has no explain; explain works on no scenario"
    ):
        command_of("feed", "explain")
    with pytest.raises(UserError) as err:
        command_of("nope", "train")
    assert str(err.value) == (
        "scenario 'nope' has no train; train works on "
        "answer_slots, compute_market, feed, search_day"
    )
