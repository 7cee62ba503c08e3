"""Cue lexicons: which words of an explanation state evidence, and which emotions that evidence argues for.

ICR, grounding, coverage and the GRPO rewards that train them all read an
explanation through a lexicon. It lists cues: each belongs to one modality,
is stated by one or more phrases ("lowered brows", "brows pulled down"), and
supports emotions with weights. Intensity words ("slightly") scale the phrase
they immediately precede. The built-in lexicon is the synthetic corpus's cue
vocabulary (:data:`migr_rt.training.synth.cues.LEXICON`). A real dataset whose
descriptions use other words brings its own as JSON (``docs/lexicon.md``).
The checkpoint trained with it stores it as ``lexicon.json``, so the runtime's
verdicts read the same words the rewards did.

Contract, checked when a lexicon is built, so a judge can rely on it:

* No word of a phrase starts with an emotion word or a label ("sadly" is
  refused, "crusade" is not). An explanation can then argue for an emotion
  only through cues, never by naming it, and naming labels never moves a
  verdict.
* Phrases are unique across the lexicon after lower-casing and collapsing
  spaces, so every match names one cue. Where one phrase lies inside
  another, the longer one is read: at each position the longest phrase wins.
* Intensity words are not words of any phrase, and no phrase begins with the
  end of a multi-word intensity word, so a weight never eats part of a phrase.
* No word is both a negation word and a scope break, and neither is an
  intensity word; their entries are plain words (no underscores, which mark
  phrases while negation is read).

A negated statement ("no lowered brows", "without a trembling voice", "the
voice isn't trembling" does not match; "there isn't a trembling voice" does)
states nothing: it neither argues for an emotion, nor claims a cue the input
must show, nor describes a modality. A phrase is negated when a negation word
stands before it in the same clause, at most :data:`NEGATION_WINDOW` words
away with no negated phrase between them, or when the phrase before it was
negated and only list words stand between them ("no lowered brows or narrowed
eyes or a trembling voice"). Punctuation, dashes, line breaks and scope-break
words ("but", "and") end the clause. Words inside a matched phrase never act
as negations or breaks, so a cue may be stated as "no eye contact" and "even
and steady voice" stays one phrase.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from migr_rt.labels import DFEW_LABELS, MODALITIES

#: ``format`` of a lexicon JSON file; ``version`` is bumped when its meaning changes.
LEXICON_FORMAT = "migr-rt-lexicon"
LEXICON_VERSION = 2  # 2: negation_words and scope_breaks (a version-1 file gets the defaults)
#: The file name a checkpoint stores its lexicon under.
LEXICON_FILE = "lexicon.json"
#: Keys a lexicon file and each of its cues may hold.
_FILE_KEYS = {"format", "version", "name", "intensity_words", "emotion_words", "negation_words", "scope_breaks",
              "cues"}
_CUE_KEYS = {"name", "modality", "phrases", "support"}


#: Words that negate a cue phrase after them in the same clause. ``n't`` stands for every word that ends in
#: n't ("isn't", "doesn't", "can't").
NEGATION_WORDS: tuple[str, ...] = (
    "no", "not", "n't", "never", "without", "nor", "neither", "none", "nothing", "cannot", "lacks", "lacking",
    "lack of", "absence of", "free of",
)  # fmt: skip
#: Words that end a negation's scope, beside punctuation and line breaks ("no frown but raised brows").
SCOPE_BREAKS: tuple[str, ...] = ("and", "but", "however", "although", "though", "yet", "while", "whereas", "except")
#: At most this many words between a negation and the phrase it negates; a phrase in between counts as one
#: word, so "no lowered brows or narrowed eyes" negates both.
NEGATION_WINDOW = 5
#: A negation followed by one of these words is no negation ("not only raised brows", "not just a frown").
_NOT_NEGATING_NEXT = ("only", "just", "merely", "simply")
#: Words trimmed from the ends of an unread clause (:meth:`CueLexicon.unread`) besides negation and intensity words.
_EDGE_WORDS = ("a", "an", "the", "some", "any", "of", "with", "or", "only", "just", "is", "are", "was", "were", "has",
               "have", "his", "her", "their", "its")
#: A negated phrase carries its negation on to the next phrase only across these words ("no A or B or C").
_LIST_JOINERS = frozenset({"or", "nor", "a", "an", "the", "any"})
#: A word of an unread clause: letters, digits and combining marks, apostrophes inside.
_UNREAD_WORD = r"[\w\u0300-\u036f]+(?:['\u2018\u2019\u02bc`][\w\u0300-\u036f]+)*"
#: What ends a negation's scope besides scope-break words: punctuation (full-width too), brackets, dashes, a hyphen
#: between spaces ("well-defined" is one word), line and paragraph breaks.
_BREAK_CHARS = (r"[.,;:!?()\[\]{}/|\u2026\u2010\u2012-\u2015\u2212\r\n\v\f\x85\u2028\u2029\u3001\u3002"
                r"\uff01\uff08\uff09\uff0c\uff0f\uff1a\uff1b\uff1f\uff3b\uff3d\uff5c]|\s-+\s|-{2,}")
#: How ``n't`` is matched: any word ending in n't, with any of the apostrophes people type.
_CONTRACTION = r"\w+n['\u2018\u2019\u02bc`\u00b4\uff07]t"


class LexiconError(ValueError):
    """A lexicon that breaks the contract or cannot be read; the message names the file, the entry and the problem."""


def normalise_phrase(text: str) -> str:
    """Lower case with runs of whitespace as one space: the form phrases are compared and looked up in."""
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class Cue:
    """One observable cue: a stable name, its modality, its canonical phrase (plus aliases) and what it supports.

    ``support`` maps emotion -> weight >= 0 (absent emotions have weight 0).
    ``aliases`` are other phrases that state the same cue; the canonical
    ``phrase`` is the one the corpus generator writes.
    """

    name: str
    modality: str
    phrase: str
    support: Mapping[str, float]
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"cue {self.name!r}: modality must be one of {MODALITIES}, got {self.modality!r}")
        if any(w < 0 for w in self.support.values()):
            raise ValueError(f"cue {self.name!r}: support weights must be >= 0")
        object.__setattr__(self, "support", MappingProxyType(dict(self.support)))
        object.__setattr__(self, "aliases", tuple(self.aliases))

    def __hash__(self) -> int:  # the read-only support mapping is unhashable; the name is the identity
        return hash((self.name, self.modality, self.phrase))

    def __reduce__(self) -> tuple:  # mappingproxy does not pickle; rebuild from a plain dict
        return (Cue, (self.name, self.modality, self.phrase, dict(self.support), self.aliases))

    @property
    def phrases(self) -> tuple[str, ...]:
        """The canonical phrase, then the aliases."""
        return (self.phrase, *self.aliases)

    @property
    def top_emotion(self) -> str:
        """The emotion this cue supports most."""
        return max(self.support, key=lambda e: self.support[e])


class Statement(NamedTuple):
    """One phrase occurrence in a text: where it lies (intensity word included), its cue, weight and polarity."""

    start: int
    end: int
    cue: Cue
    weight: float
    negated: bool
    #: the intensity word in front of the phrase, as the lexicon lists it; None when there is none (weight 1.0)
    intensity: str | None = None


def implied_emotion_scores(
    cues_with_intensity: Iterable[tuple[Cue, float]], labels: Iterable[str] = DFEW_LABELS
) -> dict[str, float]:
    """Sum of ``support x intensity`` per emotion; every label appears, unsupported ones with 0.0."""
    scores = {lab: 0.0 for lab in labels}
    for cue, weight in cues_with_intensity:
        for emotion, support in cue.support.items():
            if emotion in scores:
                scores[emotion] += support * weight
    return scores


def _words_pattern(text: str) -> str:
    """A regex for ``text``'s words in order, any run of whitespace between them."""
    return r"\s+".join(re.escape(w) for w in text.split())


def _refuse_emotion_words(where: str, phrase: str, key: str, emotion_words: Iterable[str]) -> None:
    """Refuse a phrase (normalised: ``key``) with a word that starts with one of ``emotion_words``."""
    for word in emotion_words:
        if word and re.search(rf"\b{_words_pattern(word)}", key):
            raise LexiconError(f"{where}: phrase {phrase!r} contains the emotion word {word!r}; "
                               "a cue must argue for an emotion without naming it")


def _word_list(kind: str, words: Iterable[str], contraction: bool = False) -> tuple[str, ...]:
    """Normalised negation words or scope breaks; :class:`LexiconError` for a malformed or repeated entry."""
    out: list[str] = []
    for word in words:
        key = normalise_phrase(word).replace("\u2019", "'") if isinstance(word, str) else ""
        if not (re.fullmatch(r"[^\W_]+(?: [^\W_]+)*", key) or (contraction and key == "n't")):
            raise LexiconError(f"{kind} {word!r} must be one or more words of letters or digits"
                               + (" (or \"n't\")" if contraction else ""))
        if key in out:
            raise LexiconError(f"{kind} {word!r} is listed twice (case and spacing do not count)")
        out.append(key)
    return tuple(out)


@dataclass(frozen=True, eq=False)
class CueLexicon:
    """A validated cue lexicon (see the module docstring for the contract); equal when the content is equal.

    ``name`` is a display name for reports ("builtin", a file's stem) and is
    not part of the content: two lexicons with the same cues and words are
    equal and share a :attr:`digest` whatever they are called.
    """

    cues: tuple[Cue, ...]
    intensity_words: Mapping[str, float] = field(default_factory=dict)
    emotion_words: tuple[str, ...] = ()
    name: str = "custom"
    negation_words: tuple[str, ...] = NEGATION_WORDS
    scope_breaks: tuple[str, ...] = SCOPE_BREAKS
    _phrase_cues: tuple[Cue, ...] = field(init=False, repr=False)
    _words: tuple[str, ...] = field(init=False, repr=False)
    _pattern: re.Pattern = field(init=False, repr=False)
    _negation: re.Pattern | None = field(init=False, repr=False)
    _break: re.Pattern = field(init=False, repr=False)
    _scope_words: re.Pattern | None = field(init=False, repr=False)
    _digest: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cues", tuple(self.cues))
        words: dict[str, float] = {}
        for word, weight in dict(self.intensity_words).items():
            key = normalise_phrase(word) if isinstance(word, str) else ""
            if key in words:
                raise LexiconError(f"intensity word {word!r} is listed twice (case and spacing do not count)")
            words[key] = float(weight)
        object.__setattr__(self, "intensity_words", MappingProxyType(words))
        object.__setattr__(self, "emotion_words", tuple(dict.fromkeys(normalise_phrase(w) for w in self.emotion_words)))
        object.__setattr__(self, "negation_words", _word_list("negation word", self.negation_words, contraction=True))
        object.__setattr__(self, "scope_breaks", _word_list("scope break", self.scope_breaks))
        by_phrase = self._validate()
        # Longest first, so at each position the longest phrase wins. Each phrase and intensity word is a group of
        # its own: a match names its cue and weight by group, never by re-reading the matched text, which
        # case-insensitive matching may spell differently ("raiſed brows", a Turkish dotless i).
        ordered = sorted(by_phrase.items(), key=lambda kv: (-len(kv[0]), kv[0]))
        object.__setattr__(self, "_phrase_cues", tuple(cue for _, cue in ordered))
        object.__setattr__(self, "_words", tuple(sorted(words, key=lambda w: (-len(w), w))))
        prefix = ""
        if self._words:
            prefix = r"(?:\b(?:" + "|".join(f"(?P<w{i}>{_words_pattern(w)})" for i, w in enumerate(self._words)) + r")\s+)?"
        phrases = "|".join(f"(?P<p{i}>{_words_pattern(p)})" for i, (p, _) in enumerate(ordered))
        object.__setattr__(self, "_pattern", re.compile(prefix + r"\b(?:" + phrases + r")\b", re.IGNORECASE))
        longest_first = lambda words: sorted(words, key=lambda w: (-len(w), w))  # noqa: E731
        negations = [_CONTRACTION if w == "n't" else _words_pattern(w) for w in longest_first(self.negation_words)]
        object.__setattr__(self, "_negation", re.compile(r"\b(?:" + "|".join(negations) + r")\b", re.IGNORECASE)
                           if negations else None)
        breaks = "".join(f"|\\b(?:{_words_pattern(w)})\\b" for w in longest_first(self.scope_breaks))
        object.__setattr__(self, "_break", re.compile(_BREAK_CHARS + breaks, re.IGNORECASE))
        scope_words = "|".join(_words_pattern(w) for w in longest_first(self.scope_breaks))
        object.__setattr__(self, "_scope_words", re.compile(rf"\b((?:{scope_words}))\b", re.IGNORECASE)
                           if scope_words else None)
        digest = hashlib.sha256(json.dumps(self._content(normalised=True), sort_keys=True).encode()).hexdigest()
        object.__setattr__(self, "_digest", digest)

    def __reduce__(self) -> tuple:  # the read-only mappings do not pickle; rebuild from plain values
        return (CueLexicon, (self.cues, dict(self.intensity_words), self.emotion_words, self.name,
                             self.negation_words, self.scope_breaks))

    def _validate(self) -> dict[str, Cue]:
        """Check the contract; the map from normalised phrase to cue."""
        if not self.cues:
            raise LexiconError("a lexicon needs at least one cue")
        for word, weight in self.intensity_words.items():
            if not word or not re.fullmatch(r"\w+(?: \w+)*", word):
                raise LexiconError(f"intensity word {word!r} must be one or more words of letters or digits")
            if not math.isfinite(weight) or weight <= 0:
                raise LexiconError(f"intensity word {word!r}: weight must be a finite number > 0, got {weight!r}")
            if word in self.negation_words or word in self.scope_breaks:
                raise LexiconError(f"intensity word {word!r} is also a negation word or scope break")
        both = sorted(set(self.negation_words) & set(self.scope_breaks))
        if both:
            raise LexiconError(f"{both} cannot be negation words and scope breaks at once")
        names: set[str] = set()
        by_phrase: dict[str, Cue] = {}
        for cue in self.cues:
            if not isinstance(cue, Cue):
                raise LexiconError(f"lexicon entries must be Cue objects, got {type(cue).__name__}")
            where = f"cue {cue.name!r}"
            if not isinstance(cue.name, str) or not cue.name.strip():
                raise LexiconError(f"{where}: a cue needs a non-empty name")
            if cue.name in names:
                raise LexiconError(f"{where}: the name is used by two cues")
            names.add(cue.name)
            if not any(w > 0 for w in cue.support.values()):
                raise LexiconError(f"{where}: support must give at least one emotion a weight > 0")
            for emotion, weight in cue.support.items():
                if not math.isfinite(weight):
                    raise LexiconError(f"{where}: support for {emotion!r} must be finite, got {weight!r}")
            for phrase in cue.phrases:
                key = normalise_phrase(phrase) if isinstance(phrase, str) else ""
                if not re.fullmatch(r"\w.*\w|\w", key):
                    raise LexiconError(f"{where}: phrase {phrase!r} must start and end with a letter, digit or "
                                       "underscore")
                other = by_phrase.get(key)
                if other is not None:
                    raise LexiconError(f"{where}: phrase {phrase!r} also states cue {other.name!r}; "
                                       "a phrase must name one cue")
                _refuse_emotion_words(where, phrase, key, self.emotion_words)
                self._refuse_intensity_overlap(where, phrase, key)
                by_phrase[key] = cue
        return by_phrase

    def _refuse_intensity_overlap(self, where: str, phrase: str, key: str) -> None:
        """Refuse a phrase that an intensity word could eat part of."""
        for word in self.intensity_words:
            if re.search(rf"\b{_words_pattern(word)}\b", key):
                raise LexiconError(f"{where}: phrase {phrase!r} contains the intensity word {word!r}")
            parts = word.split()
            for k in range(1, len(parts)):  # "a bit" before "bit lip" would read as "a bit" + "lip"
                tail = " ".join(parts[k:])
                if key == tail or key.startswith(tail + " "):
                    raise LexiconError(f"{where}: phrase {phrase!r} starts with {tail!r}, the end of the intensity "
                                       f"word {word!r}, so the two could not be told apart")

    # -- reading text ------------------------------------------------------------------------------------------------
    def find(self, text: str) -> list[tuple[Cue, float]]:
        """Every cue stated in ``text`` (case-insensitive, negated statements left out), in order, as ``(cue, weight)``.

        The weight comes from an intensity word immediately before the phrase
        and is 1.0 when there is none. Each occurrence is reported, so a phrase
        stated twice appears twice; callers that score claims decide whether
        to dedupe.
        """
        return [(st.cue, st.weight) for st in self.statements(text) if not st.negated]

    def spans(self, text: str) -> list[tuple[int, int, Cue, float]]:
        """:meth:`find` with where each statement lies: ``(start, end, cue, weight)``, the intensity word included."""
        return [(st.start, st.end, st.cue, st.weight) for st in self.statements(text) if not st.negated]

    def statements(self, text: str) -> list[Statement]:
        """Every phrase occurrence in ``text``, negated ones included and marked (see the module docstring)."""
        matches = list(self._pattern.finditer(text))
        negated = self._negated(text, matches)
        out = []
        for m, neg in zip(matches, negated):
            cue = self._phrase_cues[int(m.lastgroup[1:])]  # the phrase group closes last
            word = next((w for i, w in enumerate(self._words) if m.group(f"w{i}") is not None), None)
            weight = 1.0 if word is None else self.intensity_words[word]
            out.append(Statement(m.start(), m.end(), cue, weight, neg, word))
        return out

    def _negated(self, text: str, matches: list[re.Match]) -> list[bool]:
        """Whether each phrase match stands in the scope of a negation before it."""
        if self._negation is None or not matches:
            return [False] * len(matches)
        # Each phrase becomes one word of underscores (same length, so offsets hold): its own words can then
        # be neither a negation nor a break, and a phrase between a negation and another counts as one word.
        masked, last = [], 0
        for m in matches:
            masked += [text[last:m.start()], "_" * (m.end() - m.start())]
            last = m.end()
        masked_text = "".join(masked + [text[last:]])
        negations = [n.end() for n in self._negation.finditer(masked_text)]
        out: list[bool] = []
        carried = -1  # end of the last negated phrase: a list goes on negating ("no A or B or C or D")
        for m in matches:
            before = [end for end in negations if end <= m.start()]
            if not before and carried < 0:
                out.append(False)
                continue
            anchor = max(before[-1] if before else -1, carried)
            scope = masked_text[anchor:m.start()]
            words = [w.lower() for w in re.findall(r"\w+", scope)]
            if anchor == carried:  # from the last negated phrase: only a list goes on ("... or B")
                negated = self._break.search(scope) is None and set(words) <= _LIST_JOINERS
            else:
                negated = (self._break.search(scope) is None and len(words) <= NEGATION_WINDOW
                           and not (words and words[0] in _NOT_NEGATING_NEXT))
            out.append(negated)
            carried = m.end() if negated else -1
        return out

    def unread_clauses(self, text: str) -> list[tuple[str, tuple[str, ...]]]:
        """The clauses of ``text`` left once every phrase is taken out, each whole and in its pieces.

        A clause runs between phrases, punctuation and line breaks. Scope-break
        words inside it ("and") may join a list ("furrowed brow and clenched
        jaw") or belong to one expression ("salt and pepper hair", which a
        lexicon can list as one phrase, since words inside a phrase are never
        breaks); the text alone cannot tell which, so each clause comes as
        ``(whole, pieces)``, the pieces being what the scope-break words
        separate, and :meth:`unread` decides. Each is normalised, and the words
        a lexicon already handles (negation and intensity words) and articles
        are trimmed from the ends (a whole's outer ends only).
        """
        masked, last = [], 0
        for st in self.statements(text):
            masked += [text[last:st.start], "\n"]
            last = st.end
        edges = set(self.negation_words) | set(self.intensity_words) | set(_EDGE_WORDS)
        longest = max(len(e.split()) for e in edges)
        contraction = re.compile(_CONTRACTION) if "n't" in self.negation_words else None

        def edge(words: list[str], at_end: bool) -> int:
            """How many words the longest edge word at the start (or end) of ``words`` spans; 0 if none."""
            for k in range(min(longest, len(words)), 0, -1):
                if " ".join(words[-k:] if at_end else words[:k]) in edges:
                    return k
            one = words[-1] if at_end else words[0]
            return 1 if contraction is not None and contraction.fullmatch(one) else 0

        def trimmed(words: list[str], start: bool = True, end: bool = True) -> list[str]:
            while start and words and (k := edge(words, at_end=False)):
                words = words[k:]
            while end and words and (k := edge(words, at_end=True)):
                words = words[:-k]
            return words

        def words_of(piece: str) -> list[str]:
            return re.findall(_UNREAD_WORD, unicodedata.normalize("NFC", piece).lower())

        def has_letter(words: list[str]) -> bool:
            return any(re.search(r"[^\W\d_]", w) for w in words)

        out = []
        for clause in re.split(_BREAK_CHARS, "".join(masked + [text[last:]]), flags=re.IGNORECASE):
            # [piece, break word, piece, ...]: the break words kept, so that a whole reads as written
            parts = self._scope_words.split(clause) if self._scope_words is not None else [clause]
            pieces = [trimmed(words_of(piece)) for piece in parts[0::2]]
            kept = [i for i, words in enumerate(pieces) if has_letter(words)]
            if not kept:
                continue
            first, final = 2 * kept[0], 2 * kept[-1]
            whole = (pieces[kept[0]] if first == final else trimmed(words_of(parts[first]), end=False)
                     + [w for part in parts[first + 1:final] for w in words_of(part)]
                     + trimmed(words_of(parts[final]), start=False))
            out.append((" ".join(whole), tuple(" ".join(pieces[i]) for i in kept)))
        return out

    def unread(self, text: str, alone: Container[str] = frozenset()) -> list[str]:
        """The clauses of ``text`` no phrase reads, as a lexicon author needs to see them.

        "slightly lowered brows and a furious glare" leaves ``["furious
        glare"]``; ``migr-rt data`` counts these over a dataset's descriptions.
        A clause whose pieces a scope-break word joins (:meth:`unread_clauses`)
        stays whole ("salt and pepper hair": a lexicon may list it as one
        phrase) unless it is a list: a piece names an emotion, which no phrase
        may ("angry and sad"), or a piece is in ``alone``, the clauses seen on
        their own elsewhere (``migr-rt data`` passes those of the same
        modality's descriptions: "furrowed brow" said alone makes "furrowed
        brow and clenched jaw" a list).
        """
        return self.unread_of(self.unread_clauses(text), alone)

    def unread_of(self, clauses: Iterable[tuple[str, tuple[str, ...]]], alone: Container[str] = frozenset()
                  ) -> list[str]:
        """:meth:`unread` of clauses :meth:`unread_clauses` already found (a report reads each text once)."""
        out: list[str] = []
        for whole, pieces in clauses:
            names_emotion = any(re.search(rf"\b{_words_pattern(w)}", whole) for w in self.emotion_words if w)
            listed = len(pieces) > 1 and (names_emotion or any(p in alone for p in pieces))
            out += pieces if listed else [whole]
        return out

    def cues_for(self, modality: str) -> tuple[Cue, ...]:
        """The cues of one modality, in lexicon order."""
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
        return tuple(c for c in self.cues if c.modality == modality)

    # -- fitting a label set ------------------------------------------------------------------------------------------
    def check_labels(self, labels: Sequence[str]) -> list[str]:
        """Check the lexicon against a model's labels: raise on what would mislead, return what merely limits.

        Raises :class:`LexiconError` when a phrase contains a label, which
        would let an explanation argue by naming the answer. Returns warnings
        for support given to emotions that are not labels (never counted: a
        typo, or a lexicon written for a larger label set) and for labels no
        cue argues for most (an explanation can never be judged consistent
        with those, so their ICR and consistency reward say nothing).
        """
        for cue in self.cues:
            for phrase in cue.phrases:
                _refuse_emotion_words(f"cue {cue.name!r}", phrase, normalise_phrase(phrase),
                                      [normalise_phrase(lab) for lab in labels])
        warnings = []
        unknown = sorted({e for cue in self.cues for e in cue.support} - set(labels))
        if unknown:
            warnings.append(f"lexicon {self.name!r}: cues support {unknown}, which are not labels of this model; "
                            "that support is never counted")
        tops = {cue.top_emotion for cue in self.cues}
        warnings += [f"lexicon {self.name!r}: no cue argues most for {lab!r}, so an explanation can never be judged "
                     f"consistent with it" for lab in labels if lab not in tops]
        return warnings

    # -- identity and storage -----------------------------------------------------------------------------------------
    @property
    def digest(self) -> str:
        """SHA-256 of the content (cues; intensity, emotion and negation words; scope breaks), as run records key it."""
        return self._digest

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CueLexicon) and other._digest == self._digest

    def __hash__(self) -> int:
        return hash(self._digest)

    def __repr__(self) -> str:
        return f"CueLexicon(name={self.name!r}, cues={len(self.cues)}, digest={self._digest[:12]})"

    def _content(self, normalised: bool = False) -> dict[str, Any]:
        """The content as JSON values; ``normalised`` spells phrases as they are matched (for the digest)."""
        spell = normalise_phrase if normalised else str
        return {
            "intensity_words": dict(self.intensity_words),
            "emotion_words": list(self.emotion_words),
            "negation_words": sorted(self.negation_words) if normalised else list(self.negation_words),
            "scope_breaks": sorted(self.scope_breaks) if normalised else list(self.scope_breaks),
            "cues": [{"name": c.name, "modality": c.modality, "phrases": [spell(p) for p in c.phrases],
                      "support": dict(c.support)} for c in self.cues],
        }

    def to_dict(self) -> dict[str, Any]:
        """The lexicon as a JSON object in the file format (:func:`lexicon_from_dict` reads it back)."""
        return {"format": LEXICON_FORMAT, "version": LEXICON_VERSION, "name": self.name, **self._content()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def translate(text: str, source: CueLexicon, target: CueLexicon) -> str:
    """``text`` with every cue statement in ``source``'s words restated in ``target``'s.

    Each cue becomes ``target``'s canonical phrase for the cue of the same
    name, and an intensity word becomes ``target``'s word of the nearest
    weight; everything else is kept, negations included (so a negated cue
    stays negated wherever ``target`` has the same negation words). This is
    how a corpus described in the built-in vocabulary is put into other words
    to measure a lexicon (``benchmarks/own_words.py``, the tests).
    """
    phrase = {cue.name: cue.phrase for cue in target.cues}
    spans = source.statements(text)
    missing = sorted({st.cue.name for st in spans} - set(phrase))
    if missing:
        raise LexiconError(f"lexicon {target.name!r} has no cue named {missing}")
    out, last = [], 0
    for start, end, cue, weight, _, word in spans:
        stated = phrase[cue.name]
        if word is not None:
            if not target.intensity_words:
                raise LexiconError(f"lexicon {target.name!r} has no intensity words to restate {text[start:end]!r}")
            stated = min(target.intensity_words, key=lambda w: abs(target.intensity_words[w] - weight)) + " " + stated
        out += [text[last:start], stated]
        last = end
    return "".join(out + [text[last:]])


def lexicon_from_dict(obj: Any, where: str, *, defaults: CueLexicon | None = None) -> CueLexicon:
    """Build a lexicon from its JSON object; :class:`LexiconError` names ``where`` and the entry at fault.

    ``intensity_words``, ``negation_words`` and ``scope_breaks`` left out of
    the object are ``defaults``' (the built-in lexicon's when None; ``[]``
    turns negation off); ``emotion_words`` are added to ``defaults``' (a file
    can forbid more words, never fewer).
    """
    if defaults is None:
        from migr_rt.training.synth.cues import LEXICON as defaults
    if not isinstance(obj, dict):
        raise LexiconError(f"{where}: a lexicon is a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - _FILE_KEYS)
    if unknown:
        raise LexiconError(f"{where}: unknown keys {unknown}; a lexicon has {sorted(_FILE_KEYS)}")
    if obj.get("format") != LEXICON_FORMAT:
        raise LexiconError(f"{where}: \"format\" must be {LEXICON_FORMAT!r}, got {obj.get('format')!r}")
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > LEXICON_VERSION or version < 1:
        raise LexiconError(f"{where}: \"version\" must be an integer from 1 to {LEXICON_VERSION}, got {version!r}")
    name = obj.get("name", "custom")
    if not isinstance(name, str) or not name.strip():
        raise LexiconError(f"{where}: \"name\" must be a non-empty string, got {name!r}")
    words = obj.get("intensity_words", dict(defaults.intensity_words))
    if not isinstance(words, dict) or not all(_is_number(v) for v in words.values()):
        raise LexiconError(f"{where}: \"intensity_words\" must map words to numbers, got {words!r}")
    emotion_words = obj.get("emotion_words", [])
    if not isinstance(emotion_words, list) or not all(isinstance(w, str) for w in emotion_words):
        raise LexiconError(f"{where}: \"emotion_words\" must be a list of strings, got {emotion_words!r}")
    emotion_words = list(defaults.emotion_words) + emotion_words
    lists = {}
    for key in ("negation_words", "scope_breaks"):
        if key in obj and version < 2:
            raise LexiconError(f"{where}: \"{key}\" needs \"version\": 2 (version 1 has no such key)")
        value = obj.get(key, list(getattr(defaults, key)))
        if not isinstance(value, list) or not all(isinstance(w, str) for w in value):
            raise LexiconError(f"{where}: \"{key}\" must be a list of strings, got {value!r}")
        lists[key] = tuple(value)
    raw_cues = obj.get("cues")
    if not isinstance(raw_cues, list) or not raw_cues:
        raise LexiconError(f"{where}: \"cues\" must be a non-empty list of cues")
    cues = [_cue_from_dict(item, f"{where}: cues[{i}]") for i, item in enumerate(raw_cues)]
    try:
        return CueLexicon(tuple(cues), words, tuple(emotion_words), name=name.strip(), **lists)
    except (LexiconError, ValueError) as exc:
        raise LexiconError(f"{where}: {exc}") from exc


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cue_from_dict(item: Any, where: str) -> Cue:
    if not isinstance(item, dict):
        raise LexiconError(f"{where}: a cue is a JSON object, got {type(item).__name__}")
    unknown = sorted(set(item) - _CUE_KEYS)
    missing = sorted(_CUE_KEYS - set(item))
    if unknown or missing:
        raise LexiconError(f"{where}: a cue has exactly {sorted(_CUE_KEYS)}; "
                           + "; ".join(p for p in (f"unknown {unknown}" if unknown else "",
                                                     f"missing {missing}" if missing else "") if p))
    name, modality, phrases, support = item["name"], item["modality"], item["phrases"], item["support"]
    where = f"{where} ({name!r})"
    if not isinstance(name, str) or not name.strip():
        raise LexiconError(f"{where}: \"name\" must be a non-empty string")
    if modality not in MODALITIES:
        raise LexiconError(f"{where}: \"modality\" must be one of {list(MODALITIES)}, got {modality!r}")
    if not isinstance(phrases, list) or not phrases or not all(isinstance(p, str) for p in phrases):
        raise LexiconError(f"{where}: \"phrases\" must be a non-empty list of strings")
    if not isinstance(support, dict) or not all(_is_number(v) and v >= 0 for v in support.values()):
        raise LexiconError(f"{where}: \"support\" must map emotions to numbers >= 0, got {support!r}")
    return Cue(name.strip(), modality, phrases[0], {k: float(v) for k, v in support.items()}, tuple(phrases[1:]))


def load_lexicon(path: str | Path) -> CueLexicon:
    """Read and validate a lexicon JSON file (``docs/lexicon.md``); its ``name`` defaults to the file's stem."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise LexiconError(f"{path}: no such lexicon file") from exc
    except OSError as exc:
        raise LexiconError(f"{path}: not a readable JSON lexicon ({exc})") from exc
    return _parse_lexicon(data, path)


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:  # json keeps the last silently: {"angry": 1, "angry": 0.1} would mean 0.1
        raise LexiconError(f"keys {repeated} appear twice in one object")
    return dict(pairs)


def _parse_lexicon(data: bytes, path: Path) -> CueLexicon:
    try:
        obj = json.loads(data.decode("utf-8"), object_pairs_hook=_refuse_duplicate_keys)
    except LexiconError as exc:
        raise LexiconError(f"{path}: {exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise LexiconError(f"{path}: not a readable JSON lexicon ({exc})") from exc
    if isinstance(obj, dict) and "name" not in obj:
        obj = {**obj, "name": path.stem}
    return lexicon_from_dict(obj, str(path))


def stored_lexicon(folder: str | Path) -> CueLexicon:
    """The lexicon a checkpoint or artifact folder was trained with; the built-in one when it stores none.

    A checkpoint keeps it in ``lexicon.json``; the bytes read must be the
    ones its ``checksums.json`` records (:class:`CheckpointError`
    otherwise), so an edited file cannot change verdicts. An exported
    artifact keeps it in its manifest's ``extra["lexicon"]``. Folders written
    before lexicons existed used the built-in vocabulary, so that is the
    right default rather than a guess.
    """
    from migr_rt.training.synth.cues import LEXICON

    from migr_rt.artifact import MANIFEST, is_artifact, read_manifest

    folder = Path(folder)
    if is_artifact(folder):  # the manifest is the artifact's record; a stray lexicon.json beside it is not read
        stored = read_manifest(folder).extra.get("lexicon")
        return LEXICON if stored is None else lexicon_from_dict(stored, f"{folder / MANIFEST}: extra.lexicon")
    path = folder / LEXICON_FILE
    if path.is_file():
        data = path.read_bytes()
        _check_recorded(folder, path, data)
        return _parse_lexicon(data, path)
    return LEXICON


def _check_recorded(folder: Path, path: Path, data: bytes) -> None:
    """Refuse ``data`` unless the checkpoint's checksum record lists ``path`` with exactly its SHA-256."""
    from migr_rt.model.checkpoint import CHECKSUM_FILE, CheckpointError, read_checksums

    recorded = read_checksums(folder).get(path.name)
    if recorded is None:
        raise CheckpointError(f"{path}: not recorded in {folder / CHECKSUM_FILE}; refusing to judge with it")
    if hashlib.sha256(data).hexdigest() != recorded:
        raise CheckpointError(f"{path}: SHA-256 differs from {folder / CHECKSUM_FILE}; the lexicon was modified "
                              "after saving")


__all__ = ["Cue", "CueLexicon", "LexiconError", "LEXICON_FILE", "NEGATION_WINDOW", "NEGATION_WORDS", "SCOPE_BREAKS",
           "Statement", "implied_emotion_scores", "lexicon_from_dict", "load_lexicon", "normalise_phrase",
           "stored_lexicon", "translate"]
