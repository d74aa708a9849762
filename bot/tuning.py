"""Interpreter tunings of `readersviews run`, in one place, each with the measurement that keeps it.

Measured with bench/signons.py (a sign-on burst through the loopback fake Discord, the bot in its
own process, on the project's 2-core machines); measure again before changing or adding one. The
bare discord.py baseline (bench/_barebot.py) uses the same switch interval, so the ratios compare
like with like.
"""

from __future__ import annotations

import gc
import sys

# Every call through aiosqlite hands work to its thread and back; with Python's default 5 ms GIL
# switch interval a busy event loop makes each hand-back wait. Measured at 250 sign-ons/s (before
# the sign-on hot path stopped using aiosqlite's thread; other paths still do): p99 click/submit
# 404/770 ms at 5 ms, 208/292 ms at 1 ms, same CPU.
SWITCH_INTERVAL = 0.001


def apply_at_start() -> None:
    """Set before the bot starts (`readersviews run`)."""
    sys.setswitchinterval(SWITCH_INTERVAL)


async def freeze_gc_once() -> None:
    """Once ready (an `on_ready` listener), move what start-up built (modules, caches) out of the
    collector's view: a full collection otherwise walks all of it. Measured at 250 sign-ons/s, the
    longest pause fell from 95 ms to 43 ms."""
    if not gc.get_freeze_count():
        gc.collect()
        gc.freeze()
