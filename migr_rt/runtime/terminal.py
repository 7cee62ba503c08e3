"""The terminal view of ``migr-rt run``: a live block redrawn in place on a TTY, plain lines otherwise.

On a TTY, :class:`TerminalView` keeps a fixed block of lines up to date with
ANSI cursor movement: the emotion and its probability, an importance bar (and
MI) per modality with ``no face``/``silent`` flags, the dominant modality, the
rationale as it streams (wrapped, last lines), latency (window close -> fast
event, first token), windows and captured frames per second, drops and the
latest status. Elsewhere (a pipe, a file) it writes one plain line per
``window`` event and per finished ``rationale`` (and per ``status`` and the
``end``), no escape codes. It writes only to its stream.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
import time
from collections.abc import Sequence
from typing import Any, TextIO

from migr_rt.traces import parse_trace

MISSING_FLAGS = {"no_face": "no face", "silent": "silent", "no_video": "no video", "no_audio": "no audio"}


def plain_rationale(text: str) -> str:
    """A rationale (``<think><visual>...</visual>...<answer>x</answer>``, possibly cut mid-tag) as plain text."""
    text = re.sub(r"<[^>]*$", "", text)  # a tag still being streamed
    text = re.sub(r"<answer>", " -> ", text)
    text = re.sub(r"</(visual|audio|summary)>", "; ", text)
    text = re.sub(r"<(visual|audio|summary)>", r"\1: ", text)
    text = re.sub(r"<[^>]*>", "", text)
    return re.sub(r"\s*;\s*(;\s*|->|$)", r" \1", re.sub(r"\s+", " ", text)).strip(" ;")


def _verdict_note(rationale: dict[str, Any]) -> str:
    """What to add to a rationale whose explanation argues for another emotion than its answer."""
    if rationale.get("consistent") is False:
        return f" (the explanation argues for {rationale.get('explanation_emotion')})"
    return ""


def rationale_caption(rationale: dict[str, Any]) -> str:
    """One line for a finished ``rationale`` event on a small display (the video overlay): its summary and
    answer, and what its explanation argues for when that is another emotion; the whole rationale as plain
    text when it has no summary (cut short)."""
    summary = parse_trace(rationale["text"]).summary
    if not summary:
        return plain_rationale(rationale["text"]) + _verdict_note(rationale)
    answer = rationale.get("answer")
    return summary + (f" -> {answer}" if answer else "") + _verdict_note(rationale)


class TerminalView:
    """Render runtime events to ``stream`` (default ``sys.stdout``); ``isatty`` None asks the stream."""

    def __init__(self, stream: TextIO | None = None, labels: Sequence[str] = (), modalities: Sequence[str] = (),
                 isatty: bool | None = None, *, width: int | None = None, rationale_lines: int = 3,
                 min_interval: float = 0.05) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.isatty = bool(getattr(self.stream, "isatty", lambda: False)()) if isatty is None else isatty
        self.labels, self.modalities = list(labels), list(modalities)
        self.width, self.rationale_lines, self.min_interval = width, rationale_lines, min_interval
        encoding = (getattr(self.stream, "encoding", None) or "utf-8").lower().replace("-", "")
        self.bar_chars = "█░" if encoding in ("utf8", "utf16", "utf32") else "#-"
        self.window: dict[str, Any] | None = None
        self.rationale, self.rationale_window, self.first_token_ms = "", -1, None
        self.status: str = ""
        self.t0: float | None = None
        self.windows = 0
        self._drawn = 0  # lines of the block on screen
        self._last_draw = 0.0
        self._closed = False

    def update(self, event: dict[str, Any]) -> None:
        """Take one runtime event (a dict as in :mod:`migr_rt.runtime.events`)."""
        if self._closed:
            return
        kind = event.get("type")
        if self.t0 is None:
            self.t0 = time.monotonic()
        if kind == "start":
            self.labels = self.labels or list(event.get("labels", ()))
            self.modalities = self.modalities or list(event.get("modalities", ()))
            self.status = f"{event.get('source', '')} on {event.get('backend', '')}"
        elif kind == "window":
            self.window, self.windows = event, self.windows + 1
        elif kind == "rationale_token":
            if event["window"] != self.rationale_window:
                self.rationale, self.rationale_window = "", event["window"]
            self.rationale += event["text"]
        elif kind == "rationale":
            self.rationale, self.rationale_window = event["text"] + _verdict_note(event), event["window"]
            self.first_token_ms = event.get("latency_ms", {}).get("first_token")
        elif kind == "status":
            self.status = f"{event['level']}: {event['message']}"
        elif kind == "end":
            self.status = f"ended: {event['reason']}, {event['windows']} windows"
        if self.isatty:
            now = time.monotonic()
            if kind != "rationale_token" or now - self._last_draw >= self.min_interval:
                self._draw(now)
        elif kind in ("window", "rationale", "status", "end"):
            self._write(self._plain_line(event) + "\n")

    def close(self) -> None:
        """Draw the final state (TTY) and give the cursor back; later events are ignored."""
        if self._closed:
            return
        if self.isatty and self._drawn:
            self._draw(time.monotonic(), final=True)
        self._closed = True

    # -- plain lines -------------------------------------------------------------------------------------------------
    def _plain_line(self, e: dict[str, Any]) -> str:
        kind = e["type"]
        if kind == "window":
            return f"window {e['window']} {e['t_start']:.2f}-{e['t_end']:.2f}s  {self._summary(e)}"
        if kind == "rationale":
            note = (" (cancelled)" if e["cancelled"] else "") + _verdict_note(e)
            return f"rationale {e['window']}: {plain_rationale(e['text'])}{note}"
        if kind == "status":
            return f"status {e['level']} {e['code']}: {e['message']}"
        d = e["drops"]
        return f"end: {e['reason']}, {e['windows']} windows, dropped {d['frames']} frames {d['windows']} windows"

    def _summary(self, e: dict[str, Any]) -> str:
        label = e.get("label")
        parts = [f"{label} {e['probs'].get(label, 0.0):.2f}" if label else "no evidence"]
        parts += [f"{m} {v:.2f} (MI {e['mi'].get(m, 0.0):+.2f})" for m, v in e.get("importance", {}).items()]
        parts += [f"dominant {e['dominant']}"] if e.get("dominant") else []
        parts += [f"{m}: {MISSING_FLAGS.get(r, r)}" for m, r in e.get("missing", {}).items()]
        parts.append(f"latency {e['latency_ms'].get('total', 0.0):.0f} ms")
        return "  ".join(parts)

    # -- the live block ----------------------------------------------------------------------------------------------
    def _lines(self, now: float) -> list[str]:
        e = self.window or {}
        label = e.get("label")
        lines = [f"emotion    {label or '--'}" + (f"  {e['probs'].get(label, 0.0):.2f}" if label else
                                                    ("  (no evidence)" if e else "  (waiting for the first window)"))]
        bar = 20
        for m in self.modalities or list(e.get("importance", {})):
            v = e.get("importance", {}).get(m)
            filled = int(round(bar * min(max(v or 0.0, 0.0), 1.0)))
            text = (self.bar_chars[0] * filled + self.bar_chars[1] * (bar - filled)
                    + (f" {v:.2f}  MI {e['mi'].get(m, 0.0):+.2f}" if v is not None else "  --"))
            flag = MISSING_FLAGS.get(e.get("missing", {}).get(m, ""), "")
            lines.append(f"{m:<10} {text}" + (f"  [{flag}]" if flag else ""))
        lines.append(f"dominant   {e.get('dominant') or '--'}")
        elapsed = max(now - (self.t0 or now), 1e-6)
        drops = e.get("drops", {})
        total = e.get("latency_ms", {}).get("total")
        first = "--" if self.first_token_ms is None else f"{self.first_token_ms:.0f} ms"
        lines.append(f"latency    {'--' if total is None else f'{total:.0f} ms'}  first token {first}")
        lines.append(f"rate       {self.windows / elapsed:.1f} windows/s  "
                     f"{drops.get('captured_frames', 0) / elapsed:.1f} frames/s")
        lines.append(f"drops      frames {drops.get('frames', 0)}  windows {drops.get('windows', 0)}")
        lines.append(f"status     {self.status}")
        width = self._columns()
        wrapped = textwrap.wrap(plain_rationale(self.rationale), max(20, width - 12)) if self.rationale else []
        shown = wrapped[-self.rationale_lines:]
        lines += [f"{'rationale' if i == 0 else '':<10} {text}"
                  for i, text in enumerate(shown + [""] * (self.rationale_lines - len(shown)))]
        return [line[: width - 1] for line in lines]

    def _columns(self) -> int:
        if self.width:
            return self.width
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            columns = 0
        return max(columns, 40) if columns else 80  # a pty without a size reports 0

    def _draw(self, now: float, final: bool = False) -> None:
        lines = self._lines(now)
        out = [f"\x1b[{self._drawn}A\r" if self._drawn else "\x1b[?25l"]  # up to the block's top; hide the cursor
        out += [f"\x1b[2K{line}\n" for line in lines]
        if final:
            out.append("\x1b[?25h")
        self._write("".join(out))
        self._drawn, self._last_draw = len(lines), now

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
