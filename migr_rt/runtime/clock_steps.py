"""Whether the wall clock has just stepped: a sound card's timestamps say nothing of its audio for a while after.

FFmpeg times a sound card's audio (its ``alsa`` input; ``pulse`` and ``oss`` alike) by the wall clock: each packet
is stamped with ``gettimeofday`` less what the card still buffers, smoothed by a 1.5 Hz loop filter
(libavutil's timefilter). When NTP steps the wall clock, the stamps follow the step within about half a second,
overshooting by a fifth of it, and every packet in between looks like a hole in the audio. A robot that starts at
boot, before its clock is synchronised (a Raspberry Pi has no real-time clock: it boots with the time it last shut
down at, and is stepped by however long it was off), saw its voice filled with as much silence as the step: one
minute of step on a sound card with 1 ms periods put the voice 70 s behind the face for the rest of the run,
one hour put it 400 s behind. Holes in a card's timestamps are real otherwise (the card overran while the reader
was held up), so they are only disregarded for :data:`SETTLE` seconds after a step.

The wall clock is watched against the monotonic one, which NTP slews but never steps: their difference changes
only when the wall clock is stepped (or the machine wakes from suspend, which the monotonic clock does not count).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: Seconds after a step during which a sound card's timestamps are disregarded: FFmpeg's filter (1.5 Hz) has
#: followed a step of any size to within a millisecond by then.
SETTLE = 2.0
#: A change of the wall clock against the monotonic one larger than this is a step (reading the two clocks one
#: after the other is off by microseconds, milliseconds for a thread preempted in between).
STEP = 0.05


class ClockSteps:
    """Watches the wall clock for steps; :meth:`settled` is the ``gaps_trusted`` of a sound card's audio."""

    def __init__(self, name: str = "", wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.name, self._wall, self._monotonic = name, wall, monotonic
        self._offset = wall() - monotonic()
        self._stepped_at: float | None = None

    def settled(self) -> bool:
        """Whether the wall clock has not stepped for :data:`SETTLE` seconds (as of this call)."""
        now = self._monotonic()
        offset = self._wall() - now
        if abs(offset - self._offset) > STEP:
            logger.info("%s: the wall clock stepped by %+.3f s; the sound card's timestamps follow it, so they are "
                        "disregarded for %g s", self.name, offset - self._offset, SETTLE)
            self._stepped_at = now
        self._offset = offset
        return self._stepped_at is None or now - self._stepped_at >= SETTLE
