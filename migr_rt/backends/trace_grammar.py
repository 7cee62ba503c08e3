"""Which tag a rationale may write next: the MIGR trace's shape, kept per row while decoding.

A trace is ``<think>``, one segment per visible modality (each at most
once; none for a hidden one), a summary, ``</think>``, ``<answer>``, one
label, ``</answer>``. The model learned that shape, but a small model breaks
it where its training data was thin: with one modality missing it opened the
missing one's segment and filled it with cues it never saw (no face, and
"knitted brows"), or wrote "the visual evidence decides<answer>sad", its
summary never closed; a consumer that parses segments, summary and answer
gets nothing from that. Decoding takes the model's choice unless it breaks
the shape, and then the best token the shape allows. Words are never
constrained, only the tags (a segment or summary closes after a word at
least) and the answer's label; a trace the model writes well-formed is left
exactly as it is.
"""

from __future__ import annotations

import numpy as np

from migr_rt.backends.base import as_numpy

# Where a row is in its trace. FREE: a prompt this grammar does not know (only hidden segments are refused).
OPEN, SEGMENT, SUMMARY, CLOSE_THINK, OPEN_ANSWER, LABEL, CLOSE_ANSWER, DONE, FREE = range(9)


class TraceGrammar:
    """Per-row trace state over a batch; :meth:`choose` fixes the rows whose argmax breaks the trace.

    ``visible`` ``(B, M)``: the modalities each row may describe. ``prompt`` ``(B, L)``: the ids the rationale
    continues (``<think>``, maybe an opening segment tag; or ending with ``<answer>``).
    """

    def __init__(self, config, visible, prompt) -> None:
        ids = config.special_token_ids
        self.modalities = list(config.modalities)
        prompt = as_numpy(prompt, np.int64)
        rows = prompt.shape[0]
        visible = as_numpy(visible, bool)
        if visible.shape != (rows, len(self.modalities)):
            raise ValueError(f"visible must be (rows, modalities) = ({rows}, {len(self.modalities)}) bool, "
                             f"got shape {tuple(visible.shape)}")
        self.visible = visible
        self.start = {ids[f"{m}_start"]: k for k, m in enumerate(self.modalities)}
        self.end = {ids[f"{m}_end"]: k for k, m in enumerate(self.modalities)}
        self.ids = ids
        self.labels = np.asarray([int(t) for t in config.label_token_ids], dtype=np.int64)
        self._label_set = set(self.labels.tolist())
        #: every special token: none is written but where the trace calls for it
        self.tags = np.asarray(sorted(set(int(v) for v in ids.values())), dtype=np.int64)
        self._tag_set = set(self.tags.tolist())
        self.state = [FREE] * rows
        self.segment = [-1] * rows  # the modality of an open segment
        self.filled = [False] * rows  # the open segment or summary has a word (an empty one is malformed)
        self.written = [set() for _ in range(rows)]
        for row in range(rows):
            self._start(row, prompt[row].tolist())

    def _start(self, row: int, prompt: list[int]) -> None:
        think = self.ids["think_start"]
        if think in prompt:
            self.state[row] = OPEN
            for token in prompt[len(prompt) - prompt[::-1].index(think):]:
                self.advance_row(row, token)
            if self.state[row] == SEGMENT and not self.visible[row, self.segment[row]]:
                tag = self.modalities[self.segment[row]]
                raise ValueError(f"row {row}'s prompt opens the {tag} segment, but {tag} is hidden in that row: "
                                 "open the rationale with a visible modality (rationale_prompt)")
        elif prompt and prompt[-1] == self.ids["answer_start"]:
            self.state[row] = LABEL

    # -- what may come next -------------------------------------------------------------------------------------
    def allowed_tags(self, row: int) -> list[int] | None:
        """The tags row may write next, words allowed too; None: only :meth:`only` ids may come."""
        state = self.state[row]
        if state == OPEN:
            opens = [t for t, k in self.start.items() if self.visible[row, k] and k not in self.written[row]]
            return opens + [self.ids["summary_start"], self.ids["think_end"]]
        if state == SEGMENT:
            return [self.ids[f"{self.modalities[self.segment[row]]}_end"]] if self.filled[row] else []
        if state == SUMMARY:
            return [self.ids["summary_end"]] if self.filled[row] else []
        if state == FREE:
            return [t for t in self.tags.tolist() if self.start.get(t) is None or self.visible[row, self.start[t]]]
        return None

    def only(self, row: int) -> np.ndarray | None:
        """The ids row must choose among (a closing tag, the label); None where words may come."""
        state = self.state[row]
        if state == CLOSE_THINK:
            return np.asarray([self.ids["think_end"]])
        if state == OPEN_ANSWER:
            return np.asarray([self.ids["answer_start"]])
        if state == LABEL:
            return self.labels
        if state == CLOSE_ANSWER:
            return np.asarray([self.ids["answer_end"]])
        return None

    def allows(self, row: int, token: int) -> bool:
        if self.state[row] == DONE:
            return True
        only = self.only(row)
        if only is not None:
            return token in only
        return token not in self._tag_set or token in self.allowed_tags(row)

    def choose(self, logits: np.ndarray, argmax: np.ndarray) -> np.ndarray:
        """``argmax`` ``(B,)``, with each row that breaks its trace given the best token its trace allows.

        Returns ``argmax`` itself when every row keeps its choice (most steps: one set lookup per row).
        """
        out = argmax
        for row, token in enumerate(argmax.tolist()):
            if self.allows(row, token):
                continue
            if out is argmax:
                out = argmax.copy()
            only = self.only(row)
            if only is not None:
                out[row] = only[int(np.argmax(logits[row, only]))]
            else:
                scores = np.array(logits[row], dtype=np.float64)
                banned = np.setdiff1d(self.tags, self.allowed_tags(row))
                scores[banned] = -np.inf
                out[row] = int(np.argmax(scores))
        return out

    # -- moving on ------------------------------------------------------------------------------------------------
    def advance(self, tokens: np.ndarray) -> None:
        """Each row's trace after writing ``tokens`` ``(B,)``."""
        for row, token in enumerate(tokens.tolist()):
            self.advance_row(row, token)

    def advance_row(self, row: int, token: int) -> None:
        state, ids = self.state[row], self.ids
        if state == OPEN:
            if token in self.start:
                self.state[row], self.segment[row], self.filled[row] = SEGMENT, self.start[token], False
                self.written[row].add(self.start[token])
            elif token == ids["summary_start"]:
                self.state[row], self.filled[row] = SUMMARY, False
            elif token == ids["think_end"]:
                self.state[row] = OPEN_ANSWER
        elif state in (SEGMENT, SUMMARY) and token not in self._tag_set:
            self.filled[row] = True
        elif state == SEGMENT and self.end.get(token) == self.segment[row]:
            self.state[row] = OPEN
        elif state == SUMMARY and token == ids["summary_end"]:
            self.state[row] = CLOSE_THINK
        elif state == CLOSE_THINK and token == ids["think_end"]:
            self.state[row] = OPEN_ANSWER
        elif state == OPEN_ANSWER and token == ids["answer_start"]:
            self.state[row] = LABEL
        elif state == LABEL and token in self._label_set:
            self.state[row] = CLOSE_ANSWER
        elif state == CLOSE_ANSWER and token == ids["answer_end"]:
            self.state[row] = DONE
