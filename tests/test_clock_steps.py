"""A sound card's audio when NTP steps the wall clock (migr_rt.runtime.clock_steps, AudioTimeline.gaps_trusted).

FFmpeg stamps a sound card's packets with the wall clock through a loop filter (libavutil's timefilter, set up by
libavdevice's alsa input with a 1.5 Hz bandwidth). Stepping this machine's clock inside a test suite would disturb
everything else running on it, so the card is simulated here: packets of the card's period, stamped as that
filter stamps them (the model below), fed to the AudioTimeline the capture uses. The model was checked against
the real thing once, by hand: FFmpeg's alsa input on ALSA's ``file`` plugin (periods of one sample), the wall clock
stepped by +30 s, stamped 36.1 s ahead 0.26 s after the step and 30.0 s ahead from a second on; the model gives
36.2 s at 0.24 s, then 30.0 s.
"""

from __future__ import annotations

import math
from fractions import Fraction

import av
import numpy as np
import pytest

from migr_rt.media.timeline import AudioTimeline
from migr_rt.runtime import clock_steps
from migr_rt.runtime.clock_steps import ClockSteps

CARD_RATE, OUT_RATE = 48000, 16000


class LoopFilter:
    """The second-order loop FFmpeg smooths a device's wall-clock stamps with: each update moves the predicted
    time by the nominal period, then towards the measured time by a fraction of the error, and corrects the
    period estimate by another."""

    def __init__(self, seconds_per_sample: float, period: int, bandwidth: float) -> None:
        o = 2 * math.pi * bandwidth * period * seconds_per_sample

        def shrink(x: float) -> float:  # 1 - exp(-x), to third order as FFmpeg computes it
            return 1 - 1 / (1 + x * (1 + x / 2 * (1 + x / 3)))

        self.per_sample, self.gain, self.period_gain = seconds_per_sample, shrink(math.sqrt(2) * o), 0.0
        self.period_gain = shrink(o * o) / period
        self.count, self.time = 0, 0.0

    def update(self, measured: float, samples: int) -> float:
        self.count += 1
        if self.count == 1:
            self.time = measured
        else:
            self.time += self.per_sample * samples
            error = measured - self.time
            self.time += max(self.gain, 1 / self.count) * error
            self.per_sample += self.period_gain * error
        return self.time

    def reset(self) -> None:  # what FFmpeg does after an overrun
        self.count = 0


class Card:
    """A sound card read in periods of ``period`` samples; the wall clock is stepped by ``step`` seconds ``at``
    seconds in; ``lost`` (start, seconds) is an overrun, that much audio never read."""

    def __init__(self, period: int, step: float = 0.0, at: float = 4.0, lost: tuple[float, float] | None = None,
                 rate: int = CARD_RATE):
        self.period, self.step, self.at, self.lost, self.rate = period, step, at, lost, rate
        # FFmpeg's filter works in microseconds per sample with a bandwidth of 1.5e-6 per microsecond
        self.filter = LoopFilter(1e6 / rate, period, 1.5e-6)
        self.now = 0.0  # monotonic seconds, as the capture thread reads its clock

    def wall(self) -> float:
        return 1.7e9 + self.now + (self.step if self.now >= self.at else 0.0)

    def monotonic(self) -> float:
        return 1000.0 + self.now

    def frames(self, seconds: float):
        """(AudioFrame, read at) for ``seconds`` of the card's audio, stamped as FFmpeg stamps them."""
        silence = np.zeros((1, self.period * 2), np.int16)
        n = 0
        while n < seconds * self.rate:
            self.now = (n + self.period) / self.rate  # a period is read once the card has filled it
            if self.lost and self.lost[0] <= n / self.rate < self.lost[0] + self.lost[1]:
                n += self.period
                if not n / self.rate < self.lost[0] + self.lost[1]:
                    self.filter.reset()
                continue
            stamp = self.filter.update((self.wall() - self.period / self.rate) * 1e6, self.period) / 1e6
            frame = av.AudioFrame.from_ndarray(silence, format="s16", layout="stereo")
            frame.sample_rate, frame.time_base, frame.pts = self.rate, Fraction(1, 1_000_000), round(stamp * 1e6)
            yield frame
            n += self.period


def heard(card: Card, seconds: float, watched: bool) -> float:
    """Seconds of audio the timeline hands out for ``seconds`` of the card's."""
    steps = ClockSteps("mic", wall=card.wall, monotonic=card.monotonic) if watched else None
    timeline = AudioTimeline("mic", OUT_RATE, video=False, gaps_trusted=steps.settled if steps else None)
    out = sum(len(chunk) for frame in card.frames(seconds) for chunk in timeline.push(frame))
    return (out + sum(len(chunk) for chunk in timeline.finish(None))) / OUT_RATE


@pytest.mark.parametrize("period, step", [
    (48, 60.0),     # a USB card's 1 ms periods, a minute's step: 70 s of silence before
    (48, 3600.0),   # a Raspberry Pi booted an hour after it shut down, its clock then set by NTP: 400 s
    (1024, 5.0),    # 21 ms periods, a few seconds' step: 6 s
])
def test_a_wall_clock_step_does_not_put_silence_into_a_sound_cards_audio(period, step):
    assert heard(Card(period, step), 10.0, watched=False) > 10.0 + 4.5  # what the step did unwatched
    assert heard(Card(period, step), 10.0, watched=True) == pytest.approx(10.0, abs=0.01)


@pytest.mark.parametrize("rate, period, step", [
    (8000, 4096, 86400.0),                # 0.5 s periods, a day's step: stamps still skip 2.6 s after it
    (48000, 48, 56 * 365 * 86400.0),      # a board with no real-time clock, booted at 1970: 2.9 s after it
])
def test_a_large_step_is_disregarded_until_it_has_died_out_of_the_stamps(rate, period, step):
    unstepped = heard(Card(period, rate=rate), 10.0, watched=True)  # whole periods: 10.24 s of 0.512 s ones
    assert heard(Card(period, step, rate=rate), 10.0, watched=True) == pytest.approx(unstepped, abs=0.01)


def test_a_backward_step_and_no_step_leave_the_audio_as_it_was():
    assert heard(Card(1024, -5.0), 10.0, watched=True) == pytest.approx(10.0, abs=0.01)
    assert heard(Card(48), 10.0, watched=True) == pytest.approx(10.0, abs=0.01)


def test_audio_the_card_lost_is_still_filled_with_silence_when_the_clock_did_not_step():
    # an overrun (the reader held up past the card's buffer): FFmpeg resets its filter and the next stamp is the
    # wall clock's, half a second on; that half second is silence on the timeline, so the voice stays with its face
    assert heard(Card(1024, lost=(3.0, 0.5)), 10.0, watched=True) == pytest.approx(10.0, abs=0.03)
    assert heard(Card(1024, lost=(3.0, 0.5)), 10.0, watched=False) == pytest.approx(10.0, abs=0.03)


def test_a_step_is_told_from_slewing_and_trusted_again_once_the_filter_has_settled():
    clock = {"wall": 1.7e9, "mono": 100.0}
    steps = ClockSteps("mic", wall=lambda: clock["wall"], monotonic=lambda: clock["mono"])

    def advance(seconds: float, wall_rate: float = 1.0) -> bool:
        clock["mono"] += seconds
        clock["wall"] += seconds * wall_rate
        return steps.settled()

    assert advance(1.0)
    assert all(advance(0.1) for _ in range(100))
    # NTP slews both clocks alike; a rate difference the size of a slew (500 ppm) is no step over seconds
    assert all(advance(0.001, wall_rate=1.0005) for _ in range(1000))
    clock["wall"] += 60.0  # stepped
    assert not advance(0.001)
    assert not advance(clock_steps.settle_time(60.0) - 0.01)
    assert advance(0.02)
    assert clock_steps.SETTLE < clock_steps.settle_time(60.0) < clock_steps.settle_time(-86400.0)
