"""Interactions Discord has already expired are skipped, judged against the learned clock offset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import discord
import pytest

from bot.shedding import Shedder, snowflake_seconds
from bot.status import StatusReport, format_report
from tests.helpers import Booted, World, create_statement, eventually, sid, sign

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def made(seconds_before_now: float) -> int:
    """An interaction id Discord would have minted `seconds_before_now` before NOW (on its clock)."""
    return discord.utils.time_snowflake(NOW - timedelta(seconds=seconds_before_now))


class Clock:
    """Wall clock (`t`) and monotonic clock; `advance` moves both, `step` only the wall clock."""

    def __init__(self, offset: float = 0.0) -> None:
        self.t = NOW.timestamp() + offset
        self.mono = 1000.0

    def __call__(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.mono += seconds

    def step(self, seconds: float) -> None:
        self.t += seconds


def shedder_on(clock: Clock, **kwargs: float) -> Shedder:
    return Shedder(clock=clock, monotonic=clock.monotonic, **kwargs)


def test_snowflake_seconds_matches_discord_py() -> None:
    snowflake = made(0)
    assert snowflake_seconds(snowflake) == pytest.approx(discord.utils.snowflake_time(snowflake).timestamp(), abs=1e-3)


def test_fresh_answered_stale_skipped() -> None:
    shedder = shedder_on(Clock(), budget=2.5)
    assert not shedder.late(made(0.05))
    assert not shedder.late(made(2.0))
    assert shedder.late(made(2.7))
    assert shedder.late(made(10))
    assert shedder.shed == 2


@pytest.mark.parametrize("skew", [-7.0, 30.0])
def test_clock_offset_is_learned(skew: float) -> None:
    """Our clock `skew` s ahead of (or behind) Discord's: a young interaction teaches the offset."""
    shedder = shedder_on(Clock(offset=skew), budget=2.5)
    assert not shedder.late(made(0.05))
    assert shedder.offset() == pytest.approx(skew + 0.05, abs=0.01)
    assert not shedder.late(made(1.0))
    assert shedder.late(made(3.0))


def test_first_interaction_is_never_skipped() -> None:
    """With nothing learned yet, an old-looking interaction is taken as clock offset: err towards answering."""
    shedder = shedder_on(Clock(offset=4.0))
    assert not shedder.late(made(0))
    assert shedder.shed == 0


def test_offset_follows_gradual_drift() -> None:
    """Our clock gains 4 s over 200 s (far faster than any real clock): the offset keeps up."""
    clock = Clock()
    shedder = shedder_on(clock, budget=2.5, window=60)
    for second in range(1, 201):
        clock.advance(1)
        clock.t += 0.02
        fresh = discord.utils.time_snowflake(NOW + timedelta(seconds=second - 0.05))
        assert not shedder.late(fresh)
    # The estimate is the smallest age of the last one or two windows: it lags by at most 120 s of drift.
    assert 4.05 - 2.4 - 0.05 <= shedder.offset() <= 4.05 + 0.01
    assert shedder.late(discord.utils.time_snowflake(NOW + timedelta(seconds=200 - 3.5)))


def test_clock_step_is_relearned_not_shed() -> None:
    """NTP steps our clock 5 s forward: fresh interactions must not all look expired."""
    clock = Clock(offset=-5.0)  # our clock 5 s behind Discord's
    shedder = shedder_on(clock, budget=2.5)
    assert not shedder.late(made(0.05 - 5.0 + 5.0))  # a fresh one (its age reads -4.95 s)
    clock.advance(1)
    clock.step(5)  # corrected
    fresh = discord.utils.time_snowflake(NOW + timedelta(seconds=1 - 0.05))
    assert not shedder.late(fresh)
    assert not shedder.late(fresh)
    assert shedder.late(discord.utils.time_snowflake(NOW + timedelta(seconds=1 - 3.0)))
    assert shedder.shed == 1


def test_long_quiet_spell_forgets_the_old_window() -> None:
    clock = Clock()
    shedder = shedder_on(clock, budget=2.5, window=60)
    assert not shedder.late(made(0))  # taught offset 0
    clock.advance(3600)  # an hour with no interactions; meanwhile our clock ran 3 s ahead
    clock.t += 3.0
    # The first interaction after the quiet spell teaches the offset (it can't be judged late).
    first = discord.utils.time_snowflake(datetime.fromtimestamp(clock.t - 3.0 - 0.05, UTC))
    assert not shedder.late(first)
    assert shedder.offset() == pytest.approx(3.05, abs=0.05)


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

    # Everything from now on looks 5 s old: both clocks move, so it isn't taken for a clock step.
    real_monotonic = shedder.monotonic
    shedder.clock, shedder.monotonic = (lambda: real_clock() + 5), (lambda: real_monotonic() + 5)
    click = await fake.click(world.guild, world.editor, message, f"statements:sign:{sid(message)}")
    await eventually(lambda: shedder.shed == 1)
    assert click.callbacks == []

    shedder.clock, shedder.monotonic = real_clock, real_monotonic
    click = await fake.click(world.guild, world.editor, message, f"statements:sign:{sid(message)}")
    assert (await click.wait_response())["type"] == 9  # the form
    shedder.clock, shedder.monotonic = (lambda: real_clock() + 5), (lambda: real_monotonic() + 5)
    submit = await fake.submit_modal(world.guild, world.editor, None, {"name": "Late Larry"})
    await eventually(lambda: shedder.shed == 2)
    assert submit.callbacks == []
    store = running.bot.store
    assert await store.db.scalar("SELECT count(*) FROM signatures WHERE name = 'Late Larry'") == 0

    shedder.clock, shedder.monotonic = real_clock, real_monotonic
    assert "Signed" in await sign(world, message, world.editor, {"name": "Prompt Pat"})
    assert await store.db.scalar("SELECT count(*) FROM signatures WHERE withdrawn_at IS NULL") == 2
