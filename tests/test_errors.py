"""The one error policy: which failures the member reads as written, which are logged as unexpected."""

from __future__ import annotations

import discord
import pytest
from discord import app_commands

from bot.articles import FeedProblem
from bot.errors import UNEXPECTED, UserFacingError, describe_error
from bot.letter_states import Conflict, LetterError
from bot.statement_rules import StatementError


@pytest.mark.parametrize("kind", [LetterError, FeedProblem, StatementError])
def test_domain_errors_reach_the_member_as_written_and_are_not_logged(kind: type[Exception]) -> None:
    """A service's refusal is a user-facing error: its own sentence, no traceback in the log."""
    assert issubclass(kind, UserFacingError)
    assert describe_error(kind("You can't do that here.")) == ("You can't do that here.", False)


def test_conflict_is_a_letter_error() -> None:
    assert issubclass(Conflict, UserFacingError)


def test_domain_error_inside_a_command_is_unwrapped() -> None:
    """discord.py wraps a command's exception in CommandInvokeError: the member still reads the original."""

    async def digest(interaction: discord.Interaction) -> None:
        raise LetterError("`until` must be after `since`.")

    command = app_commands.Command(name="digest", description="Draft a digest", callback=digest)
    wrapped = app_commands.CommandInvokeError(command, LetterError("`until` must be after `since`."))
    assert describe_error(wrapped) == ("`until` must be after `since`.", False)


def test_unexpected_errors_are_generic_and_logged() -> None:
    assert describe_error(KeyError("review_channel_id")) == (UNEXPECTED, True)
