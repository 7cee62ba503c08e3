"""Preview images of a generated corpus, decoded from its MP4 files.

``synth_contact_sheet.png`` shows, per emotion, frames across the clip that
carries that emotion most strongly on the face; ``synth_spectrograms.png``
shows the log-mel spectrogram of the clip that carries it most strongly in the
voice. Both come from the written files (not from the renderer's arrays), so
they prove the MP4s contain what the manifest claims. PIL and numpy, plus the
model's own mel filterbank (so the preview shows the features the audio encoder
sees); both images are written atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from migr_rt.training.synth.reader import SynthCorpus
from PIL import Image, ImageDraw, ImageFont

from migr_rt.atomic import atomic_output

log = logging.getLogger(__name__)

CONTACT_SHEET = "synth_contact_sheet.png"
SPECTROGRAMS = "synth_spectrograms.png"
FRAMES_PER_ROW = 6
_LABEL_W = 230
_BG = (250, 250, 250)
_INK = (20, 20, 20)
_MUTED = (90, 90, 90)

# Anchors of a perceptually ordered dark-to-bright colour map (magma-like).
_CMAP_ANCHORS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)


def render_preview(manifest_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Write the contact sheet and the spectrogram panel for the corpus at ``manifest_path``; return their paths."""
    corpus = SynthCorpus(manifest_path)
    if not len(corpus):
        raise ValueError(f"{manifest_path}: the corpus is empty; nothing to preview")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = _labels_in_order(corpus.records)
    sheet = contact_sheet(corpus, labels)
    specs = spectrogram_panel(corpus, labels)
    paths = [out / CONTACT_SHEET, out / SPECTROGRAMS]
    for image, path in zip((sheet, specs), paths):
        with atomic_output(path) as tmp:
            image.save(tmp, format="PNG")
    log.info("wrote %s and %s", *paths)
    return paths


def _labels_in_order(records: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        seen.setdefault(r["label"], None)
    return sorted(seen)


def strongest(records: list[dict[str, Any]], emotion: str, modality: str) -> int | None:
    """Index of the record whose ``modality`` shows ``emotion`` with the highest strength (None if none does)."""
    best, best_s = None, -1.0
    for i, r in enumerate(records):
        ev = r[modality]
        if ev["emotion"] == emotion and ev["strength"] > best_s:
            best, best_s = i, ev["strength"]
    return best


def contact_sheet(corpus: SynthCorpus, labels: list[str]) -> Image.Image:
    """One row per emotion: evenly spaced frames of its most strongly evidenced clip on the face."""
    size = None
    rows: list[tuple[dict[str, Any] | None, list[np.ndarray]]] = []
    for emotion in labels:
        idx = strongest(corpus.records, emotion, "visual")
        if idx is None:
            rows.append((None, []))
            continue
        clip = corpus[idx]
        picks = np.linspace(0, len(clip.frames) - 1, FRAMES_PER_ROW).round().astype(int)
        rows.append((clip.meta, [clip.frames[k] for k in picks]))
        size = clip.frames.shape[1:3]
    h, w = size if size is not None else (160, 160)
    header = 28
    sheet = Image.new("RGB", (_LABEL_W + FRAMES_PER_ROW * w, header + len(labels) * h), _BG)
    draw = ImageDraw.Draw(sheet)
    small, big = _font(12), _font(18)
    draw.text((8, 6), "face: frames across the clip (onset -> apex), decoded from the MP4", font=small, fill=_MUTED)
    for r, (emotion, (meta, frames)) in enumerate(zip(labels, rows)):
        y = header + r * h
        draw.text((8, y + 6), emotion, font=big, fill=_INK)
        if meta is None:
            draw.text((8, y + 32), "(no clip shows it)", font=small, fill=_MUTED)
            continue
        draw.text((8, y + 30), f"{meta['id']}  strength {meta['visual']['strength']:.2f}", font=small, fill=_MUTED)
        _wrapped(draw, meta.get("visual_text", ""), (8, y + 48), _LABEL_W - 14, small)
        for c, frame in enumerate(frames):
            sheet.paste(Image.fromarray(frame), (_LABEL_W + c * w, y))
    return sheet


def spectrogram_panel(corpus: SynthCorpus, labels: list[str], height: int = 150, width: int = 760) -> Image.Image:
    """One log-mel spectrogram per emotion, of its most strongly evidenced clip in the voice.

    All panels share one dB scale (80 dB below the loudest panel), so a quiet
    voice looks quiet.
    """
    header = 28
    panel = Image.new("RGB", (_LABEL_W + width, header + len(labels) * (height + 8)), _BG)
    draw = ImageDraw.Draw(panel)
    small, big = _font(12), _font(18)
    draw.text(
        (8, 6),
        "voice: log-mel spectrogram, 0-8 kHz (mel scale), one 80 dB scale for all rows, decoded from the MP4",
        font=small,
        fill=_MUTED,
    )
    rows: list[tuple[dict[str, Any], np.ndarray] | None] = []
    for emotion in labels:
        idx = strongest(corpus.records, emotion, "audio")
        if idx is None:
            rows.append(None)
            continue
        clip = corpus[idx]
        rows.append((clip.meta, log_mel_spectrogram(clip.audio, clip.sample_rate)))
    ref = max((mel.max() for row in rows if row is not None for mel in [row[1]]), default=0.0)
    for r, (emotion, row) in enumerate(zip(labels, rows)):
        y = header + r * (height + 8)
        draw.text((8, y + 6), emotion, font=big, fill=_INK)
        if row is None:
            draw.text((8, y + 32), "(no clip shows it)", font=small, fill=_MUTED)
            continue
        meta, mel = row
        draw.text((8, y + 30), f"{meta['id']}  strength {meta['audio']['strength']:.2f}", font=small, fill=_MUTED)
        _wrapped(draw, meta.get("audio_text", ""), (8, y + 48), _LABEL_W - 14, small)
        img = colour_map(np.clip((mel - (ref - 80.0)) / 80.0, 0, 1))[::-1]  # low frequencies at the bottom
        panel.paste(Image.fromarray(img).resize((width, height), Image.BILINEAR), (_LABEL_W, y))
    return panel


def log_mel_spectrogram(
    audio: np.ndarray, sample_rate: int, *, n_fft: int = 1024, hop: int = 160, n_mels: int = 80
) -> np.ndarray:
    """``(n_mels, frames)`` log-mel power in dB (Hann window, 0 Hz to Nyquist).

    The filterbank is the audio encoder's (:func:`migr_rt.model.encoders.mel_filterbank`:
    HTK mel scale, unit-area triangles), so each band is the mean power across it.
    """
    # Imported here: the model package pulls in torch, which `import preview` should not pay for.
    from migr_rt.model.encoders import mel_filterbank

    x = np.asarray(audio, dtype=np.float64)
    x = np.pad(x, (n_fft // 2, n_fft // 2))
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (frames, n_fft // 2 + 1)
    mel = power @ mel_filterbank(n_fft, n_mels, sample_rate, 0.0, sample_rate / 2)  # (frames, n_mels)
    return (10 * np.log10(np.maximum(mel, 1e-12))).T


def colour_map(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to uint8 RGB with a magma-like colour map."""
    v = np.clip(values, 0, 1) * (len(_CMAP_ANCHORS) - 1)
    i = np.minimum(v.astype(int), len(_CMAP_ANCHORS) - 2)
    frac = (v - i)[..., None]
    return (_CMAP_ANCHORS[i] * (1 - frac) + _CMAP_ANCHORS[i + 1] * frac).astype(np.uint8)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _wrapped(draw: ImageDraw.ImageDraw, text: str, xy: tuple[int, int], width: int, font) -> None:
    """Draw ``text`` word-wrapped to ``width`` pixels, comma-separated items kept whole where possible."""
    x, y = xy
    line = ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width:
            line = trial
            continue
        draw.text((x, y), line, font=font, fill=_MUTED)
        y += font.size + 2 if hasattr(font, "size") else 13
        line = word
    if line:
        draw.text((x, y), line, font=font, fill=_MUTED)
