"""Interactions Discord has already expired are skipped, judged against the learned clock offset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import discord
import pytest

from bot.shedding import Shedder, snowflake_seconds
from bot.status import StatusReport, format_report
from tests.conftest import Booted, World
from tests.test_statements import create_statement, eventually, sid, sign

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def made(seconds_before_now: float) -> int:
    """An interaction id Discord would have minted `seconds_before_now` before NOW (on its clock)."""
    return discord.utils.time_snowflake(NOW - timedelta(seconds=seconds_before_now))


class Clock:
    def __init__(self, offset: float = 0.0) -> None:
        self.t = NOW.timestamp() + offset

    def __call__(self) -> float:
        return self.t


def test_snowflake_seconds_matches_discord_py() -> None:
    snowflake = made(0)
    assert snowflake_seconds(snowflake) == pytest.approx(discord.utils.snowflake_time(snowflake).timestamp(), abs=1e-3)


def test_fresh_answered_stale_skipped() -> None:
    shedder = Shedder(budget=2.5, clock=Clock())
    assert not shedder.late(made(0.05))
    assert not shedder.late(made(2.0))
    assert shedder.late(made(2.7))
    assert shedder.late(made(10))
    assert shedder.shed == 2


@pytest.mark.parametrize("skew", [-7.0, 30.0])
def test_clock_offset_is_learned(skew: float) -> None:
    """Our clock `skew` s ahead of (or behind) Discord's: a young interaction teaches the offset."""
    shedder = Shedder(budget=2.5, clock=Clock(offset=skew))
    assert not shedder.late(made(0.05))
    assert shedder.offset() == pytest.approx(skew + 0.05, abs=0.01)
    assert not shedder.late(made(1.0))
    assert shedder.late(made(3.0))


def test_first_interaction_is_never_skipped() -> None:
    """With nothing learned yet, an old-looking interaction is taken as clock offset: err towards answering."""
    shedder = Shedder(clock=Clock(offset=4.0))
    assert not shedder.late(made(0))
    assert shedder.shed == 0


def test_offset_follows_drift_across_windows() -> None:
    clock = Clock()
    shedder = Shedder(budget=2.5, window=60, clock=clock)
    assert not shedder.late(made(0))
    clock.t += 61  # our clock drifts 4 s ahead over the next two windows
    assert shedder.late(discord.utils.time_snowflake(NOW + timedelta(seconds=61 - 4)))  # looks 4 s old
    clock.t += 61
    # The young interaction seen before the drift has aged out of both windows; new young ones teach.
    assert not shedder.late(discord.utils.time_snowflake(NOW + timedelta(seconds=122 - 4.05)))
    clock.t += 61
    assert not shedder.late(discord.utils.time_snowflake(NOW + timedelta(seconds=183 - 4.1)))
    assert shedder.offset() == pytest.approx(4.05, abs=0.05)


def test_budget_must_leave_room_to_answer() -> None:
    with pytest.raises(ValueError, match="budget"):
        Shedder(budget=3.0)
    with pytest.raises(ValueError, match="budget"):
        Shedder(budget=0)


def test_status_mentions_skipped_interactions_only_when_any() -> None:
    report = StatusReport("1", None, None, "db", 4, {}, {})
    assert "Over capacity" not in format_report(report)
    report.shed = 3
    assert "Over capacity: 3 interaction(s)" in format_report(report)


async def test_expired_click_and_form_are_skipped_and_record_nothing(running: Booted, world: World) -> None:
    """A click or form that waited past Discord's window gets no answer and writes nothing; fresh ones work."""
    fake = world.fake
    message = await create_statement(world, running)
    assert "Signed" in await sign(world, message, world.reader, {"name": "Rita Reader"})  # teaches the offset
    shedder = running.bot.shedder
    real_clock = shedder.clock

    shedder.clock = lambda: real_clock() + 5  # everything from now on looks 5 s old
    click = await fake.click(world.guild, world.editor, message, f"statements:sign:{sid(message)}")
    await eventually(lambda: shedder.shed == 1)
    assert click.callbacks == []

    shedder.clock = real_clock
    click = await fake.click(world.guild, world.editor, message, f"statements:sign:{sid(message)}")
    assert (await click.wait_response())["type"] == 9  # the form
    shedder.clock = lambda: real_clock() + 5
    submit = await fake.submit_modal(world.guild, world.editor, None, {"name": "Late Larry"})
    await eventually(lambda: shedder.shed == 2)
    assert submit.callbacks == []
    store = running.bot.store
    assert await store.db.scalar("SELECT count(*) FROM signatures WHERE name = 'Late Larry'") == 0

    shedder.clock = real_clock
    assert "Signed" in await sign(world, message, world.editor, {"name": "Prompt Pat"})
    assert await store.db.scalar("SELECT count(*) FROM signatures WHERE withdrawn_at IS NULL") == 2
