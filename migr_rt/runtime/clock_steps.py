"""Whether the wall clock has just stepped: a sound card's timestamps say nothing of its audio for a while after.

FFmpeg times a sound card's audio (its ``alsa`` input; ``pulse`` and ``oss`` alike) by the wall clock: each packet
is stamped with ``gettimeofday`` less what the card still buffers, smoothed by a 1.5 Hz loop filter
(libavutil's timefilter). When NTP steps the wall clock, the stamps follow the step within about half a second,
overshooting by a fifth of it, and every packet in between looks like a hole in the audio. A robot that starts at
boot, before its clock is synchronised (a Raspberry Pi has no real-time clock: it boots with the time it last shut
down at, and is stepped by however long it was off), saw its voice filled with as much silence as the step: one
minute of step on a sound card with 1 ms periods put the voice 70 s behind the face for the rest of the run,
one hour put it 400 s behind. Holes in a card's timestamps are real otherwise (the card overran while the reader
was held up), so they are only disregarded for a while after a step: :data:`SETTLE` seconds, and
:data:`SETTLE_PER_DECADE` more for each tenfold of its size (see :func:`settle_time`).

The wall clock is watched against the monotonic one, which NTP slews but never steps: their difference changes
only when the wall clock is stepped (or the machine wakes from suspend, which the monotonic clock does not count).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: Seconds after a step during which a sound card's timestamps are disregarded, for a step of a second or less.
SETTLE = 2.0
#: Seconds more for each tenfold of the step. FFmpeg's filter (1.5 Hz) is linear: what is left of a step decays
#: exponentially, so a step ten times larger takes a fixed time more to die out. Simulated (tests/test_clock_steps.py's
#: model), the stamps of a 48 kHz card with 1 ms periods still skipped by over 0.1 s 2.9 s after a 56-year step (a
#: board without a real-time clock that boots at 1970), those of an 8 kHz one with 4096-sample periods 2.6 s after a
#: day's; 0.5 s a decade leaves a second to spare for any step up to thousands of years, periods from 1 to 8192.
SETTLE_PER_DECADE = 0.5


#: A change of the wall clock against the monotonic one larger than this is a step (reading the two clocks one
#: after the other is off by microseconds, milliseconds for a thread preempted in between).
STEP = 0.05


def settle_time(step: float) -> float:
    """Seconds during which a sound card's timestamps are disregarded after the wall clock stepped by ``step``."""
    return SETTLE + SETTLE_PER_DECADE * max(0.0, math.log10(abs(step))) if step else SETTLE


class ClockSteps:
    """Watches the wall clock for steps; :meth:`settled` is the ``gaps_trusted`` of a sound card's audio."""

    def __init__(self, name: str = "", wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.name, self._wall, self._monotonic = name, wall, monotonic
        self._offset = wall() - monotonic()
        self._until: float | None = None  # monotonic time until which the timestamps are disregarded

    def settled(self) -> bool:
        """Whether the last step of the wall clock has died out of the timestamps (as of this call)."""
        now = self._monotonic()
        offset = self._wall() - now
        step = offset - self._offset
        if abs(step) > STEP:
            settle = settle_time(step)
            logger.info("%s: the wall clock stepped by %+.3f s; the sound card's timestamps follow it, so they are "
                        "disregarded for %.1f s", self.name, step, settle)
            # a step while an earlier one still dies out: the earlier may take longer
            self._until = max(self._until or now, now + settle)
        self._offset = offset
        return self._until is None or now >= self._until
