"""What is timed: the shared front end, the plain Hugging Face path, and the runtime's probes.

The front end (:func:`front_end`) cuts one window the way
:meth:`migr_rt.runtime.Runtime.analyze` does (the same sampled frames, a face
box per sampled frame, the same crops, audio fitted to the model's window),
so both paths compared see identical model inputs and any difference in
their outputs is the model path's.

:class:`HFPath` is the plain ``transformers`` path a research repository
runs: MI by 1 + M separate ``model(...)`` forwards (one per visibility
variant, encoders inside each, as ``forward`` runs them), the label
distribution read at the answer slot over ``model.label_token_ids``, and the
rationale by :func:`migr_rt.generate.generate` (``use_cache``, greedy), closed
with the label as the runtime closes its rationales
(:class:`~migr_rt.backends.decode.AnswerAnchor`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from migr_rt.face import FaceDetector
from migr_rt.generate import GenerationConfig, generate
from migr_rt.mi import importance_from_log_probs, variant_visibility
from migr_rt.model.config import MigrConfig
from migr_rt.model.layout import scoring_ids
from migr_rt.perf.timing import Timed
from migr_rt.preprocess import fit_audio
from migr_rt.rationale import answer_anchor, rationale_prompt, rationale_text
from migr_rt.runtime.capture import WindowPlan
from migr_rt.runtime.engine import RuntimeConfig, face_crop


class TimedDetector:
    """A face detector that adds up the time spent in it (``ms``), so one run's face work can be set apart."""

    def __init__(self, inner: FaceDetector) -> None:
        self.inner = inner
        self.ms = 0.0

    def detect(self, frame: np.ndarray):
        t0 = time.perf_counter()
        try:
            return self.inner.detect(frame)
        finally:
            self.ms += (time.perf_counter() - t0) * 1e3

    def reset(self) -> None:
        """Pass a reset on to a tracking detector (the runtime resets it per window)."""
        reset = getattr(self.inner, "reset", None)
        if callable(reset):
            reset()

    def take(self) -> float:
        """Milliseconds detected since the last call."""
        ms, self.ms = self.ms, 0.0
        return ms


@dataclass
class Window:
    """One window's model inputs, batch 1: ``pixel_values`` ``(1, T, 3, S, S)``, ``audio_values`` ``(1, S)``."""

    pixel_values: torch.Tensor | None
    audio_values: torch.Tensor | None
    present: torch.Tensor  #: (1, M) bool
    faces_found: int


def sampled_frame_indices(n_frames: int, cfg: MigrConfig, fps: float, window_start: float = 0.0) -> list[int]:
    """The frames :meth:`Runtime.analyze` samples from a window of ``n_frames`` decoded frames."""
    plan = WindowPlan(cfg.audio_seconds, RuntimeConfig().hop, fps, cfg.sample_rate, cfg.num_frames)
    return [min(k, n_frames - 1) for k in plan.sample_indices(window_start)]


def front_end(frames: np.ndarray, audio: np.ndarray | None, cfg: MigrConfig, detector: FaceDetector, *,
              fps: float, runtime: RuntimeConfig | None = None) -> Window:
    """Face detection and crop of the sampled frames, and the audio window, as the runtime does them.

    The runtime's own :func:`~migr_rt.runtime.engine.face_crop` per sampled
    frame (without the frame embedding) and the presence rules of ``Runtime._window_event``.
    """
    runtime = runtime or RuntimeConfig()
    size = cfg.face_size
    index = sampled_frame_indices(len(frames), cfg, fps)
    unique = sorted(set(index))
    crops, boxes = {}, {}
    for k in unique:
        crops[k], boxes[k] = face_crop(frames[k], detector, size, runtime.face_margin)
    pixels = torch.from_numpy(np.stack([crops[k] for k in index])).permute(0, 3, 1, 2).float().div_(255.0)
    with_face = sum(boxes[k] is not None for k in index)
    audio_values = None
    if audio is not None and len(audio):
        samples = np.asarray(audio, np.float32).reshape(-1)[: int(round(cfg.audio_seconds * cfg.sample_rate))]
        fitted = fit_audio(samples, cfg.audio_samples)
        if float(np.sqrt(np.mean(fitted**2))) >= runtime.silence_rms:
            audio_values = torch.from_numpy(fitted)[None]
    present = torch.tensor([[2 * with_face >= len(index), audio_values is not None]])
    return Window(pixels[None], audio_values, present, with_face)


def hf_step_probe(model, out, cache_tokens: int) -> Timed:
    """Time one cached ``model.forward`` step after ``out`` (a prefill output) grew by ``cache_tokens`` tokens.

    ``reset`` crops the DynamicCache back after each timed call, so every call
    sees the same cache length.
    """
    with torch.no_grad():
        for _ in range(cache_tokens):
            nxt = out.logits[:, -1].float().argmax(-1)
            out = model(nxt[:, None], cache=out.cache, use_cache=True, past_key_visible=out.key_visible)
    cache, key_visible = out.cache, out.key_visible
    nxt = out.logits[:, -1].float().argmax(-1)
    length = cache.get_seq_length()

    def call():
        with torch.no_grad():
            o = model(nxt[:, None], cache=cache, use_cache=True, past_key_visible=key_visible)
            return o.logits[:, -1].float().cpu()

    def reset():  # the DynamicCache grew in place by the timed token: cut it back
        extra = cache.get_seq_length() - length
        if extra:
            cache.crop(-extra)

    return Timed(call, reset)


class HFPath:
    """The plain ``transformers`` path on a loaded :class:`~migr_rt.model.MigrForEmotionReasoning`."""

    def __init__(self, model, tokenizer, *, max_new_tokens: int = 96) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config: MigrConfig = model.config
        self.max_new_tokens = max_new_tokens
        device = model.device
        self.scoring = torch.tensor([scoring_ids(self.config)], device=device)

    def _inputs(self, win: Window):
        d = self.model.device
        return (win.pixel_values.to(d) if win.pixel_values is not None else None,
                win.audio_values.to(d) if win.audio_values is not None else None, win.present.to(d))

    @torch.no_grad()
    def encode(self, win: Window):
        pixels, audio, _ = self._inputs(win)
        visual = self.model.encode_visual(pixels) if pixels is not None else None
        sound = self.model.encode_audio(audio) if audio is not None else None
        return tuple(t.cpu() if t is not None else None for t in (visual, sound))

    @torch.no_grad()
    def forward_variant(self, win: Window, visible: torch.Tensor) -> torch.Tensor:
        """One ``model(...)`` forward of the scoring sequence, ``visible`` ``(1, M)``: label log-probs ``(1, C)``."""
        pixels, audio, _ = self._inputs(win)
        out = self.model(self.scoring, pixels, audio, modality_visible=visible.to(self.model.device))
        return out.logits[:, -1, self.model.label_token_ids].float().log_softmax(dim=-1).cpu()

    def score_mi(self, win: Window, variants: int | None = None) -> dict:
        """MI by 1 + M separate forwards (or ``variants`` of them, cycling the visibility patterns)."""
        patterns = variant_visibility(win.present.bool())[0]  # (1+M, M)
        count = variants or patterns.shape[0]
        rows = [self.forward_variant(win, patterns[i % patterns.shape[0]][None]) for i in range(count)]
        if variants is not None:
            return {}
        log_probs = torch.cat(rows)[None]  # (1, 1+M, C)
        target = log_probs[:, 0].argmax(dim=-1)
        mi, importance, dominant = importance_from_log_probs(log_probs, target, win.present.bool())
        return {"log_probs": log_probs, "target": int(target[0]), "mi": mi[0], "importance": importance[0],
                "dominant": int(dominant[0])}

    @torch.no_grad()
    def prefill(self, win: Window, ids: list[int]):
        pixels, audio, present = self._inputs(win)
        out = self.model(torch.tensor([ids], device=self.model.device), pixels, audio, modality_visible=present,
                         use_cache=True)
        return out.logits[:, -1].float().cpu(), out

    def step_probe(self, win: Window, ids: list[int], cache_tokens: int) -> Timed:
        """One ``model.forward(token, cache=..., use_cache=True)`` as ``generate`` runs it, the cache kept at length."""
        with torch.no_grad():
            _, out = self.prefill(win, ids)
        return hf_step_probe(self.model, out, cache_tokens)

    def analyze(self, frames: np.ndarray, audio: np.ndarray | None, detector: FaceDetector, *, fps: float,
                runtime: RuntimeConfig | None = None) -> dict:
        """Window -> label + MI (the fast result) -> streamed rationale, timed: milliseconds and what came out."""
        cfg = self.config
        if isinstance(detector, TimedDetector):
            detector.take()
        t0 = time.perf_counter()
        win = front_end(frames, audio, cfg, detector, fps=fps, runtime=runtime)
        if not bool(win.present.any()):
            raise ValueError("the benchmark window has neither a face nor audio")
        res = self.score_mi(win)
        dominant = cfg.modalities[res["dominant"]] if res["dominant"] >= 0 else None
        fast = time.perf_counter()
        ids, lead = rationale_prompt(cfg, dominant)
        first: list[float] = []
        pixels, audio_values, present = self._inputs(win)
        out = generate(self.model, torch.tensor([ids]), pixels, audio_values, present=present,
                       config=GenerationConfig(max_new_tokens=self.max_new_tokens, temperature=0.0),
                       on_token=lambda step, tok: first.append(time.perf_counter()) if step == 0 else None,
                       anchor=answer_anchor(cfg, cfg.labels[res["target"]], "label"))
        tokens = out.tokens[0, : int(out.lengths[0])].tolist()
        text = rationale_text(self.tokenizer, cfg, tokens, lead)
        end = time.perf_counter()
        return {"fast_ms": (fast - t0) * 1e3, "first_token_ms": (first[0] - t0) * 1e3, "full_ms": (end - t0) * 1e3,
                "face_detect_ms": detector.take() if isinstance(detector, TimedDetector) else None,
                "tokens": len(tokens), "token_ids": tokens, "label": cfg.labels[res["target"]], "dominant": dominant,
                "text": text}


def runtime_analyze(runtime, frames: np.ndarray, audio: np.ndarray | None, *, fps: float) -> dict:
    """:meth:`Runtime.analyze` with ``rationale=True``, timed the same way as :meth:`HFPath.analyze`.

    The fast event's latency is the event's own ``latency_ms.total`` (from the
    start of ``analyze``); the first token is placed by the rationale event's
    own clock (its full time minus its first-token time before the end).
    """
    detector = runtime.detector
    if isinstance(detector, TimedDetector):
        detector.take()
    t0 = time.perf_counter()
    event = runtime.analyze(frames, audio, fps=fps, rationale=True)
    end = time.perf_counter()
    full_ms = (end - t0) * 1e3
    rationale = event.get("rationale")
    if rationale is None:
        raise ValueError("the runtime wrote no rationale for the benchmark window")
    lat = rationale["latency_ms"]
    first_ms = full_ms - lat["full"] + (lat["first_token"] if lat["first_token"] is not None else lat["full"])
    return {"fast_ms": float(event["latency_ms"]["total"]), "first_token_ms": first_ms, "full_ms": full_ms,
            "face_detect_ms": detector.take() if isinstance(detector, TimedDetector) else None,
            "tokens": int(rationale["tokens"]), "label": event["label"], "dominant": event["dominant"],
            "text": rationale["text"]}
