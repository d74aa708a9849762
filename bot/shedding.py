"""Don't work for interactions Discord has already given up on.

Discord takes an interaction's first answer for 3 s after it created the interaction; after that
the answer fails (10062) and the member sees "This interaction failed". When a burst outruns the
bot, interactions wait in its queue; answering the ones that are already too old costs the same
work as answering a fresh one (a database round trip, an HTTP request) and only makes the fresh
ones late too. Skipping them keeps the bot answering what it still can: a sign-on burst beyond
capacity then degrades to "some members must click again" instead of "nobody gets an answer".

An interaction's age comes from its snowflake id (Discord's clock) and our clock. The two clocks
can disagree, so the smallest age seen recently is taken as the offset: a quiet moment's
interaction is young, and anything older than that by more than the budget is late. When our
wall clock steps (NTP correcting it, a VM resuming), what was learned no longer holds: a step is
seen against the monotonic clock, and the offset is learned again from the next interactions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot import metrics

log = logging.getLogger(__name__)

DISCORD_EPOCH_MS = 1420070400000
ANSWER_WINDOW = 3.0


def snowflake_seconds(snowflake: int) -> float:
    """When Discord created `snowflake`, in Unix seconds."""
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000


class Shedder:
    """Decides, for each interaction about to be worked on, whether it is already too late.

    `budget` is how old (beyond the clock offset) an interaction may be when its work starts; the
    rest of the 3 s window is for the work and the answer. The offset estimate is the smallest age
    seen in the current or the previous `window` seconds, so it follows a clock that drifts.
    """

    STEP = 0.25  # a wall-clock jump (against the monotonic clock) larger than this is a step

    def __init__(
        self,
        *,
        budget: float = 2.5,
        window: float = 300.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < budget < ANSWER_WINDOW:
            raise ValueError(f"budget must be between 0 and {ANSWER_WINDOW} s, not {budget}")
        self.budget = budget
        self.window = window
        self.clock = clock
        self.monotonic = monotonic
        self.shed = 0  # interactions skipped since start
        self._wall_minus_mono = clock() - monotonic()
        self._period_start = clock()
        self._min_now = float("inf")  # smallest age this period
        self._min_before = float("inf")  # ...and in the previous one
        self._logged_at = float("-inf")
        self._logged_count = 0

    def offset(self) -> float:
        """Our clock minus Discord's (plus the gateway's delivery time), as estimated so far."""
        best = min(self._min_now, self._min_before)
        return 0.0 if best == float("inf") else best

    def late(self, interaction_id: int) -> bool:
        """True if an interaction created as `interaction_id` can no longer be answered in time."""
        now = self.clock()
        wall_minus_mono = now - self.monotonic()
        if abs(wall_minus_mono - self._wall_minus_mono) > self.STEP:
            # Our clock stepped: ages measured before are off by the step; learn the offset again.
            self._period_start, self._min_before, self._min_now = now, float("inf"), float("inf")
        elif now - self._period_start >= self.window:
            # The previous window only counts if it ended just now, not after a long quiet spell.
            recent = self._min_now if now - self._period_start < 2 * self.window else float("inf")
            self._period_start, self._min_before, self._min_now = now, recent, float("inf")
        self._wall_minus_mono = wall_minus_mono
        age = now - snowflake_seconds(interaction_id)
        self._min_now = min(self._min_now, age)
        if age - self.offset() <= self.budget:
            return False
        self.shed += 1
        metrics.INTERACTIONS.labels("skipped").inc()
        if now - self._logged_at >= 60:
            log.warning(
                "over capacity: skipped %d interaction(s) Discord had already expired (%.1f s old); "
                "their members see 'This interaction failed' and can click again",
                self.shed - self._logged_count, age - self.offset(),
            )  # fmt: skip
            self._logged_at, self._logged_count = now, self.shed
        return True
