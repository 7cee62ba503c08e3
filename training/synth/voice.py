"""Vectorised source-filter voice: syllable train, f0 contour, glottal pulses, formants, noise.

The voice is a sequence of vowel-like syllables (no words): emotion lives in
the prosody and voice quality, which is what the audio cues describe.

Pipeline (all numpy, no per-sample Python loops):

1. syllable timing from the speech rate, with occasional phrase pauses;
2. an f0 contour in semitones (level, slope, per-syllable melodic accents,
   upward jump, vibrato/jitter) around the speaker's own f0;
3. a Rosenberg glottal pulse train (open quotient and closing speed set by
   tension and breathiness; creak adds period-doubling and shimmer), plus
   pitch-synchronous aspiration noise;
4. a vocal-tract filter applied in the STFT domain: per-syllable vowel
   formants, spectral tilt, brightness (presence boost or muffling low-pass);
5. a syllable energy envelope with the attack sharpness, consonant-like noise
   bursts, tremolo, saturation for harshness, loudness and background noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from migr_rt.training.synth.params import param


@dataclass(frozen=True)
class VoiceExpression:
    """Prosody and voice-quality parameters; 0 everywhere is an even, calm voice."""

    loudness: float = param(-1.0, 1.0)  # + loud, - quiet (about +-9 dB)
    pitch: float = param(-1.0, 1.0)  # level, +-6 semitones from the speaker's own f0
    pitch_slope: float = param(-1.0, 1.0)  # + rising, - falling over the utterance
    pitch_range: float = param(-1.0, 1.0)  # + lively melodic accents, - monotone
    pitch_jump: float = param(0.0, 1.0)  # sudden upward step early in the utterance
    tremor: float = param(0.0, 1.0)  # vibrato, tremolo and jitter
    rate: float = param(-1.0, 1.0)  # + fast, - slow syllable rate
    tension: float = param(0.0, 1.0)  # pressed, harsh phonation
    brightness: float = param(-1.0, 1.0)  # + presence boost, - muffled low-pass
    breathiness: float = param(0.0, 1.0)
    creak: float = param(0.0, 1.0)  # vocal fry: irregular, period-doubled pulses
    attack: float = param(0.0, 1.0)  # sharp syllable onsets and plosive bursts
    onset_burst: float = param(0.0, 1.0)  # first syllable much louder and sudden


#: Prototypical voice per emotion.
VOICE_PROTOTYPES: dict[str, VoiceExpression] = {
    "angry": VoiceExpression(
        loudness=0.9, pitch=0.3, pitch_slope=-0.5, pitch_range=0.2, rate=0.6, tension=1.0, brightness=0.5, attack=1.0
    ),
    "disgust": VoiceExpression(
        loudness=-0.1,
        pitch=-0.6,
        pitch_slope=-0.6,
        pitch_range=-0.2,
        rate=-0.6,
        creak=1.0,
        tension=0.3,
        brightness=-0.2,
    ),
    "fear": VoiceExpression(
        pitch=0.8, pitch_slope=0.6, pitch_range=0.2, tremor=1.0, breathiness=0.8, rate=0.7, loudness=-0.2
    ),
    "happy": VoiceExpression(pitch=0.6, pitch_range=1.0, pitch_slope=0.5, brightness=0.8, loudness=0.4, rate=0.3),
    "neutral": VoiceExpression(),
    "sad": VoiceExpression(
        loudness=-0.8,
        pitch=-0.6,
        pitch_slope=-0.5,
        rate=-0.8,
        brightness=-0.9,
        pitch_range=-0.7,
        breathiness=0.3,
        tremor=0.2,
    ),
    "surprise": VoiceExpression(
        pitch_jump=1.0, onset_burst=1.0, pitch=0.5, loudness=0.5, pitch_slope=0.4, pitch_range=0.3, attack=0.4
    ),
}

#: Vowel formants (F1, F2, F3 in Hz) of an adult male vocal tract; speakers scale them.
_VOWELS = np.array(
    [[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240], [660, 1720, 2410]],
    dtype=np.float64,
)
_BANDWIDTHS = np.array([90.0, 120.0, 170.0])
_FORMANT_GAINS = np.array([1.0, 0.6, 0.35])
_N_FFT = 512
_HOP = 128


@dataclass(frozen=True)
class Speaker:
    """Who speaks and where: constant over a clip."""

    f0: float  # Hz, the speaker's calm speaking pitch
    formant_scale: float  # vocal-tract length factor (1.0 adult male, ~1.17 adult female)
    base_rate: float  # syllables per second when calm
    noise_db: float  # background noise RMS in dBFS


def sample_speaker(rng: np.random.Generator) -> Speaker:
    """A male or female speaker in a quiet room."""
    female = rng.random() < 0.5
    return Speaker(
        f0=float(rng.uniform(175, 225) if female else rng.uniform(100, 135)),
        formant_scale=float(rng.uniform(1.12, 1.2) if female else rng.uniform(0.98, 1.06)),
        base_rate=float(rng.uniform(3.6, 4.4)),
        noise_db=float(rng.uniform(-58, -44)),
    )


@dataclass(frozen=True)
class VoiceRender:
    """The waveform (float32 in [-1, 1]) and its syllable envelope (float32 in [0, 1], same length)."""

    audio: np.ndarray
    envelope: np.ndarray
    sample_rate: int

    def frame_envelope(self, fps: float, n_frames: int) -> np.ndarray:
        """Mean syllable envelope over each video frame's span: how far the mouth opens in that frame."""
        edges = np.round(np.arange(n_frames + 1) * self.sample_rate / fps).astype(int)
        edges = np.clip(edges, 0, len(self.envelope))
        sums = np.concatenate([[0.0], np.cumsum(self.envelope, dtype=np.float64)])
        counts = np.maximum(np.diff(edges), 1)
        return ((sums[edges[1:]] - sums[edges[:-1]]) / counts).astype(np.float32)


@dataclass(frozen=True)
class _Syllables:
    onsets: np.ndarray  # seconds
    lengths: np.ndarray  # voiced length, seconds
    amps: np.ndarray
    vowels: np.ndarray  # row indices into _VOWELS


def synthesize_voice(
    expression: VoiceExpression,
    speaker: Speaker,
    *,
    duration: float = 2.0,
    sample_rate: int = 16000,
    rng: np.random.Generator,
) -> VoiceRender:
    """Render ``duration`` seconds of speech-like voice with the given prosody."""
    e = expression
    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate
    syl = _syllables(e, speaker, duration, rng)
    envelope = _envelope(e, syl, t, rng)
    f0 = _f0_contour(e, speaker, syl, t, duration, rng)

    phase = np.cumsum(f0) / sample_rate  # in periods
    source = _glottal_source(e, phase, rng)
    aspiration = rng.standard_normal(n) * (0.04 + 0.7 * e.breathiness) * (0.5 + 0.5 * (np.mod(phase, 1.0) < 0.5))
    voiced = _vocal_tract(source + aspiration * np.std(source), e, speaker, syl, sample_rate)

    y = voiced * envelope
    if e.tremor > 0:
        y *= 1 + 0.35 * e.tremor * np.sin(2 * math.pi * rng.uniform(5.5, 7.5) * t + rng.uniform(0, 2 * math.pi))
    active = envelope > 0.3
    if np.any(active):
        y /= np.sqrt(np.mean(y[active] ** 2)) + 1e-9  # unit RMS while speaking; loudness is applied below
    y += _consonants(e, syl, n, sample_rate, rng)
    if e.tension > 0:
        drive = 1 + 2.5 * e.tension
        y = np.tanh(drive * y / 3) / math.tanh(drive / 3) * 3  # saturation: adds harsh upper harmonics

    level = 10 ** ((-21.0 + 9.0 * e.loudness) / 20)
    y *= level
    y = np.tanh(y / 0.95) * 0.95  # soft limiter: loud voices stay in range
    y += _background(n, speaker.noise_db, rng)
    return VoiceRender(audio=y.astype(np.float32), envelope=envelope.astype(np.float32), sample_rate=sample_rate)


def _syllables(e: VoiceExpression, speaker: Speaker, duration: float, rng: np.random.Generator) -> _Syllables:
    rate = speaker.base_rate * 2 ** (0.75 * e.rate)
    start, end = rng.uniform(0.06, 0.18), duration - rng.uniform(0.08, 0.2)
    onsets, lengths = [], []
    t = start
    while t < end - 0.1:
        slot = rng.uniform(0.8, 1.2) / rate
        onsets.append(t)
        lengths.append(min(slot * rng.uniform(0.62, 0.82), end - t))
        t += slot
        if rng.random() < 0.12:
            t += rng.uniform(0.1, 0.22)  # phrase break
    k = len(onsets)
    amps = rng.uniform(0.7, 1.0, k)
    if k:
        amps[0] *= 1 + 1.3 * e.onset_burst
    return _Syllables(np.array(onsets), np.array(lengths), amps, rng.integers(0, len(_VOWELS), k))


def _envelope(e: VoiceExpression, syl: _Syllables, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-sample syllable energy: exponential attack (sharper with ``attack``), hold, exponential release."""
    env = np.zeros_like(t)
    sr = 1.0 / (t[1] - t[0])
    for j, (t0, length, amp) in enumerate(zip(syl.onsets, syl.lengths, syl.amps)):
        tau_a = 0.035 * (1 - e.attack) + 0.004 * e.attack
        if j == 0 and e.onset_burst > 0:
            tau_a *= 1 - 0.7 * e.onset_burst
        tau_r = rng.uniform(0.03, 0.06)
        i0, i1 = int(t0 * sr), min(len(t), int((t0 + length + 5 * tau_r) * sr))
        u = t[i0:i1] - t0
        seg = amp * (1 - np.exp(-u / tau_a)) * np.where(u > length, np.exp(-(u - length) / tau_r), 1.0)
        np.maximum(env[i0:i1], seg, out=env[i0:i1])
    peak = env.max()
    return env / peak if peak > 0 else env


def _f0_contour(
    e: VoiceExpression, speaker: Speaker, syl: _Syllables, t: np.ndarray, duration: float, rng: np.random.Generator
) -> np.ndarray:
    """f0 in Hz per sample, built at a 5 ms control rate and interpolated."""
    tc = np.arange(0.0, duration + 0.005, 0.005)
    if len(syl.onsets):
        first, last = syl.onsets[0], syl.onsets[-1] + syl.lengths[-1]
    else:
        first, last = 0.0, duration
    u = np.clip((tc - first) / max(last - first, 1e-3), 0, 1)
    st = 6.0 * e.pitch + 5.0 * e.pitch_slope * (u - 0.5) - 2.5 * e.creak

    # melodic accents: one pitch target per syllable, smoothed into glides
    spread = 1.6 * 2 ** (1.4 * e.pitch_range)
    idx = np.clip(np.searchsorted(syl.onsets, tc, side="right") - 1, 0, max(len(syl.onsets) - 1, 0))
    if len(syl.onsets):
        targets = rng.standard_normal(len(syl.onsets)) * spread
        accents = targets[idx]
        kernel = np.hanning(13)
        st += np.convolve(np.pad(accents, 6, mode="edge"), kernel / kernel.sum(), mode="valid")
        within = (tc - syl.onsets[idx]) / np.maximum(syl.lengths[idx], 1e-3)
        st -= 0.8 * np.clip(within, 0, 1)  # declination inside each syllable
    if e.pitch_jump > 0 and len(syl.onsets) > 1:
        tj = syl.onsets[1] - 0.02
        after = tc >= tj
        st += np.where(after, e.pitch_jump * (4.0 + 5.0 * np.exp(-(tc - tj) / 0.35)), 0.0)
    if e.tremor > 0:
        st += 1.1 * e.tremor * np.sin(2 * math.pi * rng.uniform(5.5, 8.0) * tc + rng.uniform(0, 2 * math.pi))
    jitter = rng.standard_normal(len(tc)) * (0.12 + 0.5 * e.tremor + 0.8 * e.creak)
    st += np.convolve(jitter, np.ones(3) / 3, mode="same")
    f0 = np.clip(speaker.f0 * 2 ** (st / 12), 55.0, 500.0)
    return np.interp(t, tc, f0)


def _glottal_source(e: VoiceExpression, phase: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Differentiated Rosenberg pulses; tension shortens the open phase, breathiness lengthens it."""
    open_q = np.clip(0.6 - 0.22 * e.tension + 0.2 * e.breathiness, 0.3, 0.9)
    closing = open_q * (0.33 - 0.15 * e.tension)
    opening = open_q - closing
    x = np.mod(phase, 1.0)
    pulse = np.where(
        x < opening,
        0.5 * (1 - np.cos(np.pi * x / opening)),
        np.where(x < open_q, np.cos(0.5 * np.pi * (x - opening) / closing), 0.0),
    )
    if e.creak > 0:
        period = np.floor(phase).astype(np.int64)
        shimmer = rng.uniform(1 - 0.6 * e.creak, 1.0, period[-1] + 2)
        pulse *= shimmer[period] * (1 - 0.65 * e.creak * (period % 2))
    return np.diff(pulse, prepend=pulse[0])


def _vocal_tract(x: np.ndarray, e: VoiceExpression, speaker: Speaker, syl: _Syllables, sample_rate: int) -> np.ndarray:
    """Filter ``x`` with a time-varying formant envelope by STFT multiplication and overlap-add."""
    n = len(x)
    pad = np.pad(x, (_N_FFT, _N_FFT + _HOP))
    n_frames = (len(pad) - _N_FFT) // _HOP + 1
    win = np.hanning(_N_FFT + 1)[:-1]
    frames = np.lib.stride_tricks.sliding_window_view(pad, _N_FFT)[::_HOP][:n_frames] * win
    spec = np.fft.rfft(frames, axis=1)
    freqs = np.fft.rfftfreq(_N_FFT, 1 / sample_rate)

    # formant tracks: the vowel of the syllable under each frame, smoothed into transitions
    centres = (np.arange(n_frames) * _HOP + _N_FFT / 2 - _N_FFT) / sample_rate
    if len(syl.onsets):
        idx = np.clip(np.searchsorted(syl.onsets, centres, side="right") - 1, 0, len(syl.onsets) - 1)
        formants = _VOWELS[syl.vowels[idx]] * speaker.formant_scale
    else:
        formants = np.tile(_VOWELS[0] * speaker.formant_scale, (n_frames, 1))
    kernel = np.hanning(7)
    kernel /= kernel.sum()
    formants = np.stack([np.convolve(np.pad(f, 3, mode="edge"), kernel, mode="valid") for f in formants.T], axis=1)
    formants[:, 1:] *= 1 + 0.08 * max(e.brightness, 0.0)  # spread lips: F2/F3 up

    bw = _BANDWIDTHS * (1 + 0.6 * e.breathiness)
    resonance = _FORMANT_GAINS[None, :, None] / np.sqrt(
        1 + ((freqs[None, None, :] - formants[:, :, None]) / (bw[None, :, None] / 2)) ** 2
    )
    env = resonance.sum(axis=1) + 0.03
    octaves = np.log2(np.maximum(freqs, 60.0) / 500.0)
    tilt_db = (-3.0 + 3.5 * e.tension + 2.5 * e.brightness) * np.maximum(octaves, 0)
    env *= 10 ** (tilt_db / 20)
    if e.brightness > 0:
        env *= 1 + 1.4 * e.brightness * np.exp(-(((freqs - 3000) / 900) ** 2))
    elif e.brightness < 0:
        cutoff = 4500 * 2 ** (2.3 * e.brightness)
        env /= np.sqrt(1 + (freqs / cutoff) ** 6)

    out_frames = np.fft.irfft(spec * env, n=_N_FFT, axis=1) * win
    out = np.zeros(len(pad))
    for k in range(_N_FFT // _HOP):  # frames k, k+4, ... do not overlap each other
        block = out_frames[k :: _N_FFT // _HOP].reshape(-1)
        start = k * _HOP
        out[start : start + len(block)] += block[: len(out) - start]
    norm = np.sum(win**2) / _HOP
    return out[_N_FFT : _N_FFT + n] / norm


def _consonants(e: VoiceExpression, syl: _Syllables, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Short high-passed noise bursts just before syllable onsets (plosives/fricatives)."""
    out = np.zeros(n)
    for t0, amp in zip(syl.onsets, syl.amps):
        length = int(sample_rate * rng.uniform(0.012, 0.035) * (1 - 0.4 * e.attack))
        i0 = max(0, int(t0 * sample_rate) - length)
        i1 = min(n, i0 + length)
        if i1 <= i0 or rng.random() < 0.3:
            continue
        burst = np.diff(rng.standard_normal(i1 - i0 + 1))  # first difference: a crude high-pass
        out[i0:i1] += burst * np.hanning(i1 - i0) * amp * (0.25 + 0.5 * e.attack)
    return out


def _background(n: int, level_db: float, rng: np.random.Generator) -> np.ndarray:
    """Pink-ish room noise at ``level_db`` dBFS RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    spec /= np.sqrt(np.maximum(f, 1.0))
    noise = np.fft.irfft(spec, n=n)
    return noise / (np.std(noise) + 1e-12) * 10 ** (level_db / 20)
