"""Reliability: the parsers under property-based fuzzing (hypothesis), on a bounded budget.

Each parser either accepts its input or refuses it with its own typed error,
never anything else:

* ``migr_rt.artifact.read_manifest`` / ``read_artifact``: arbitrary JSON and
  near-valid manifests -> ``ArtifactError`` or a usable ``Manifest``;
* the synthetic corpus manifest reader -> ``ManifestError`` or records;
* the dataset annotation readers (DFEW CSV, MAFW txt, RAVDESS file names)
  -> ``DatasetError`` or well-formed entries, in both error policies;
* cue lexicons: ``lexicon_from_dict`` on arbitrary and near-valid JSON ->
  ``LexiconError`` or a lexicon; reading arbitrary text mixed from phrases,
  intensity, negation and break words and punctuation -> statements that lie
  where their phrase is, and unread clauses in which no phrase is left;
* ``decode_media`` on mutated bytes of small real files -> a ``MediaError``
  or valid arrays, each example in a worker process with a timeout, so a hang
  in ffmpeg fails the test instead of stalling it.

The whole file runs in under 30 s (``max_examples`` per property; ``MIGR_FUZZ_EXAMPLES=N`` runs a longer,
randomized campaign).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from data_fixtures import build_dfew, build_mafw, dfew_csv, frames_for, mafw_txt, tone, write_wav
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from migr_rt.training.data import DatasetError, DFEWReader, MAFWReader, RAVDESSReader
from migr_rt.training.synth.reader import ManifestError
from migr_rt.training.synth.reader import read_manifest as read_corpus_manifest

from migr_rt.artifact import GRAPH_NAMES, ArtifactError, Manifest, read_artifact, read_manifest, sha256_of
from migr_rt.media import write_media

#: Examples per property. The default run is derandomized (the same examples every time, about 15 s for the
#: file); MIGR_FUZZ_EXAMPLES=N runs N random examples per property (a longer campaign, new examples each run).
CAMPAIGN = os.environ.get("MIGR_FUZZ_EXAMPLES")
EXAMPLES = int(CAMPAIGN or 150)
FUZZ = settings(deadline=None, max_examples=EXAMPLES, derandomize=CAMPAIGN is None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

JSON_SCALARS = (st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
                | st.text(max_size=12))
JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


# --------------------------------------------------------------------------------------------- cue lexicons

SMALL_LEXICON = {
    "format": "migr-rt-lexicon", "version": 2, "name": "small", "intensity_words": {"a bit": 0.4, "very": 1.0},
    "cues": [{"name": "scowl", "modality": "visual", "phrases": ["scowl", "brows drawn low"], "support": {"angry": 1}},
             {"name": "shout", "modality": "audio", "phrases": ["shouting"], "support": {"angry": 0.9}}],
}  # fmt: skip


@FUZZ
@given(value=JSON, edits=st.dictionaries(st.sampled_from(sorted(SMALL_LEXICON) + ["negation_words", "scope_breaks",
                                                                                   "emotion_words", "extra"]),
                                          JSON | st.lists(st.text(max_size=8), max_size=4), max_size=3))
def test_lexicon_parser_on_arbitrary_and_near_valid_json(value, edits):
    from migr_rt.training.lexicon import CueLexicon, LexiconError, lexicon_from_dict

    for obj in (value, {**SMALL_LEXICON, **edits}):
        try:
            lexicon = lexicon_from_dict(obj, "fuzz.json")
        except LexiconError as exc:
            assert "fuzz.json" in str(exc)
            continue
        assert isinstance(lexicon, CueLexicon)
        assert lexicon_from_dict(json.loads(lexicon.to_json()), "again") == lexicon


def _lexicon_tokens():
    from migr_rt.training.lexicon import NEGATION_WORDS, SCOPE_BREAKS
    from migr_rt.training.synth.cues import CUES, INTENSITY_WORDS

    words = ([c.phrase for c in CUES] + list(INTENSITY_WORDS) + [w for w in NEGATION_WORDS if w != "n't"]
             + list(SCOPE_BREAKS) + ["isn't", "not only", ",", ".", " - ", "\n", "(", "…", "the face", "glare",
                                     "scowl", "brows drawn low", "shouting", "a bit", "very"])
    return st.sampled_from(words) | st.text(max_size=6)


@FUZZ
@given(parts=st.lists(_lexicon_tokens(), max_size=14),
       seps=st.lists(st.sampled_from([" ", "  ", "\t", ""]), min_size=14, max_size=14),
       which=st.sampled_from(["builtin", "small"]))
def test_reading_text_with_a_lexicon(parts, seps, which):
    from migr_rt.training.judge import CueJudge
    from migr_rt.training.lexicon import lexicon_from_dict, normalise_phrase
    from migr_rt.training.synth.cues import LEXICON

    lexicon = LEXICON if which == "builtin" else lexicon_from_dict(SMALL_LEXICON, "small")
    text = "".join(p + s for p, s in zip(parts, seps))
    statements = lexicon.statements(text)
    last = 0
    for st_ in statements:
        assert last <= st_.start < st_.end <= len(text)
        said = normalise_phrase(text[st_.start:st_.end])
        phrase = said if st_.intensity is None else said[len(st_.intensity):].strip()
        assert phrase in map(normalise_phrase, st_.cue.phrases), (text, said)
        assert st_.weight == (1.0 if st_.intensity is None else lexicon.intensity_words[st_.intensity])
        last = st_.end
    assert lexicon.find(text) == [(s.cue, s.weight) for s in statements if not s.negated]
    assert all(v >= 0 for v in CueJudge(lexicon=lexicon).emotion_scores(text).values())
    for piece in lexicon.unread(text):
        assert piece and lexicon.statements(piece) == [], (text, piece)


# --------------------------------------------------------------------------------------------- artifact manifests


def _valid_manifest(folder: Path) -> dict:
    """A manifest whose six (placeholder) graph files exist with the recorded hashes: read_artifact accepts it."""
    tensor = {"name": "x", "dtype": "float32", "shape": ["batch", 3]}
    graphs = {}
    for g in GRAPH_NAMES:
        (folder / f"{g}.onnx").write_bytes(g.encode())
        graphs[g] = {"file": f"{g}.onnx", "sha256": sha256_of(folder / f"{g}.onnx"), "inputs": [tensor],
                     "outputs": [dict(tensor, name="y")]}
    (folder / "tokenizer.json").write_text("{}")
    return {"format_version": 1, "format": "onnx", "precision": "fp32", "graphs": graphs,
            "model_config": {"labels": ["angry", "happy"], "modalities": ["visual", "audio"]},
            "source_checkpoint": {"path": "ckpt", "sha256": "0" * 64}, "tools": {"migr_rt": "0.1.0"},
            "opset": 18, "tokenizer_files": ["tokenizer.json"], "parity": {"scoring": 1e-6}, "extra": {}}


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("fuzz-artifact") / "art"
    folder.mkdir()
    manifest = _valid_manifest(folder)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert read_artifact(folder).format == "onnx"
    return folder, manifest


def _check_manifest_text(folder: Path, text: str | bytes) -> None:
    path = folder / "manifest.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        manifest = read_manifest(folder)
    except ArtifactError as exc:
        assert str(folder / "manifest.json") in str(exc)  # names the file
        return
    assert isinstance(manifest, Manifest)
    # what the backends read first must be usable whenever the reader says yes
    assert all(isinstance(x, str) for x in manifest.labels + manifest.modalities)
    assert isinstance(manifest.extra, dict) and isinstance(manifest.source_checkpoint, dict)
    json.loads(manifest.to_json())
    try:
        read_artifact(folder)
    except ArtifactError:
        pass


@FUZZ
@given(value=JSON)
def test_read_manifest_on_arbitrary_json(artifact_dir, value):
    _check_manifest_text(artifact_dir[0], json.dumps(value))


@FUZZ
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_read_manifest_on_arbitrary_bytes(artifact_dir, data):
    _check_manifest_text(artifact_dir[0], data)


@settings(FUZZ, max_examples=2 * EXAMPLES)
@given(
    edits=st.lists(
        st.tuples(
            st.sampled_from(["top", "graph", "tensor"]),
            st.sampled_from(["format_version", "format", "precision", "graphs", "model_config", "source_checkpoint",
                             "tools", "opset", "tokenizer_files", "parity", "extra", "file", "sha256", "inputs",
                             "outputs", "name", "dtype", "shape", "labels", "modalities"]),
            st.just(None) | JSON | st.sampled_from(["../x.onnx", "/etc/passwd", "a\x00b", "x" * 300, "", ".",
                                                    "scoring.onnx", ["../tokenizer.json"], [1, 2], "abc", 7, 1.5]),
            st.booleans(),  # True: delete the key instead
        ),
        min_size=1, max_size=4,
    ),
    graph=st.sampled_from(GRAPH_NAMES),
)
def test_read_manifest_on_near_valid_manifests(artifact_dir, edits, graph):
    folder, valid = artifact_dir
    manifest = json.loads(json.dumps(valid))
    for where, key, value, delete in edits:
        target = _edit_target(manifest, where, key, graph)
        if target is None:
            continue
        if delete:
            target.pop(key, None)
        else:
            target[key] = value
    _check_manifest_text(folder, json.dumps(manifest))


def _edit_target(manifest: dict, where: str, key: str, graph: str) -> dict | None:
    """The object an edit applies to: the manifest, its model config, one graph, or that graph's first input."""
    if where == "top":
        if key in ("labels", "modalities"):
            config = manifest.get("model_config")
            return config if isinstance(config, dict) else None
        return manifest
    graphs = manifest.get("graphs")
    g = graphs.get(graph) if isinstance(graphs, dict) else None
    if not isinstance(g, dict):
        return None
    if where == "graph":
        return g
    inputs = g.get("inputs")
    return inputs[0] if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict) else None


def test_read_manifest_on_pathological_json(artifact_dir):
    folder = artifact_dir[0]
    for text in ("[" * 100_000 + "]" * 100_000, '{"a": ' * 50_000 + "1" + "}" * 50_000, "1e999999", "NaN",
                 '{"format_version": 1e400}', '{"format_version": true}'):
        _check_manifest_text(folder, text)


# --------------------------------------------------------------------------------------------- corpus manifests


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-corpus") / "manifest.jsonl"


RECORD = {"id": "synth-0-00000", "file": "clips/a.mp4", "label": "happy", "fps": 25, "sample_rate": 16000,
          "visual": {}, "audio": {}}


def _check_corpus(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        records = read_corpus_manifest(path)
    except ManifestError as exc:
        assert str(path) in str(exc)
        return
    assert all(isinstance(r, dict) and all(k in r for k in RECORD) for r in records)


@FUZZ
@given(lines=st.lists(JSON.map(json.dumps) | st.text(max_size=40) | st.just(json.dumps(RECORD)), max_size=5))
def test_corpus_manifest_reader_on_json_lines(corpus_file, lines):
    _check_corpus(corpus_file, "\n".join(lines).encode("utf-8", "surrogatepass"))


@FUZZ
@given(data=st.binary(max_size=300))
def test_corpus_manifest_reader_on_bytes(corpus_file, data):
    _check_corpus(corpus_file, json.dumps(RECORD).encode() + b"\n" + data)


def test_corpus_manifest_reader_on_pathological_lines(corpus_file):
    for data in (b"[" * 100_000, b'{"id": "\xff"}', b"\x00\x00\n", ("\u2028".join([json.dumps(RECORD)] * 2)).encode()):
        _check_corpus(corpus_file, data)


# --------------------------------------------------------------------------------------------- dataset annotations


@pytest.fixture(scope="module")
def dataset_roots(tmp_path_factory) -> dict[str, Path]:
    """Index-only dataset trees (zero-byte clips): the fuzzed annotation file is swapped in per example."""
    root = tmp_path_factory.mktemp("fuzz-datasets")
    dfew = build_dfew(root / "DFEW", {("train", 1): [(1, 1), (2, 4), (16, 7)]}, media=False)
    mafw = build_mafw(root / "MAFW", {("train", 1): [(1, "anger"), (2, "happiness")]}, media=False)
    ravdess = root / "RAVDESS"
    (ravdess / "Actor_01").mkdir(parents=True)
    return {"dfew": dfew, "mafw": mafw, "ravdess": ravdess}


def _check_reader(make, on_error: str) -> None:
    try:
        reader = make(on_error)
    except DatasetError:
        return
    for entry in reader.entries:
        assert entry.label in reader.labels and entry.clip_id.startswith(reader.name + "/")
    if on_error == "skip":
        assert all(count > 0 for count in reader.skipped.values())


CSV_CELLS = st.text(max_size=8) | st.integers(-3, 20_000).map(str) | st.sampled_from(
    ["video_name", "label", "1", "7", "8", "0", "00016", "²", "١٢", "1e3", " 3 ", '"', "\r", "\n", ",", "\x00"])


@FUZZ
@given(rows=st.lists(st.lists(CSV_CELLS, max_size=4), max_size=6), header=st.booleans(), on_error=st.sampled_from(
    ["skip", "raise"]), raw=st.none() | st.binary(max_size=80))
def test_dfew_csv_reader(dataset_roots, rows, header, on_error, raw):
    root = dataset_roots["dfew"]
    lines = ([["video_name", "label"]] if header else []) + rows
    text = "\n".join(",".join(row) for row in lines).encode("utf-8", "surrogatepass") + (raw or b"")
    dfew_csv(root, "train", 1).write_bytes(text)
    _check_reader(lambda policy: DFEWReader(root, fold=1, split="train", on_error=policy), on_error)


MAFW_TOKENS = st.text(max_size=10) | st.sampled_from(
    ["00001.mp4", "00002", "anger", "Happiness", "contempt", "bored", "../x.mp4", ".", "..", "a b", "\t", "é.mp4"])


@FUZZ
@given(lines=st.lists(st.lists(MAFW_TOKENS, max_size=3).map(" ".join), max_size=6),
       on_error=st.sampled_from(["skip", "raise"]), raw=st.none() | st.binary(max_size=80))
def test_mafw_txt_reader(dataset_roots, lines, on_error, raw):
    root = dataset_roots["mafw"]
    text = "\n".join(lines).encode("utf-8", "surrogatepass") + (raw or b"")
    mafw_txt(root, "train", 1).write_bytes(text)
    _check_reader(lambda policy: MAFWReader(root, fold=1, split="train", on_error=policy), on_error)


RAVDESS_STEMS = (st.from_regex(r"\A\d{2}(-\d{2}){6}\Z", fullmatch=True)
                 | st.lists(st.sampled_from(["00", "01", "02", "03", "08", "09", "24", "25", "99", "1", "x"]),
                            min_size=6, max_size=8).map("-".join)
                 | st.text(st.characters(exclude_characters="/\x00", exclude_categories=("Cs",)), min_size=1,
                           max_size=30))


@FUZZ
@given(stems=st.lists(st.tuples(RAVDESS_STEMS, st.sampled_from([".mp4", ".wav", ".MP4", ".txt"])), max_size=5,
                      unique_by=lambda s: s[0] + s[1].lower()),
       on_error=st.sampled_from(["skip", "raise"]), modality=st.sampled_from(["av", "video", "audio"]))
def test_ravdess_file_name_parser(dataset_roots, stems, on_error, modality):
    actor = dataset_roots["ravdess"] / "Actor_01"
    for old in actor.iterdir():
        old.unlink()
    for stem, suffix in stems:
        name = stem + suffix
        assume(len(name.encode("utf-8")) <= 200 and name not in (".", ".."))
        (actor / name).write_bytes(b"")
    _check_reader(lambda policy: RAVDESSReader(dataset_roots["ravdess"], modality=modality, on_error=policy),
                  on_error)


def test_dataset_readers_on_pathological_annotations(dataset_roots):
    dfew = dataset_roots["dfew"]
    for text in ("video_name,label\n²,1\n", "video_name,label\n" + "9" * 5000 + ",1\n",
                 'video_name,label\n"' + "x" * 200_000 + '",1\n', "video_name,label\n1,1\x00\n"):
        dfew_csv(dfew, "train", 1).write_text(text)
        for policy in ("skip", "raise"):
            _check_reader(lambda p: DFEWReader(dfew, fold=1, split="train", on_error=p), policy)
    mafw = dataset_roots["mafw"]
    for data in (b"00001.mp4 anger\n\xff\xfe", b"\x00 \x00\n", ("x" * 100_000 + " anger").encode()):
        mafw_txt(mafw, "train", 1).write_bytes(data)
        for policy in ("skip", "raise"):
            _check_reader(lambda p: MAFWReader(mafw, fold=1, split="train", on_error=p), policy)


# --------------------------------------------------------------------------------------------- container reader


_WORKER = r"""
import json, resource, sys, traceback
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # a runaway allocation is a MemoryError, not an OOM kill
import numpy as np
from migr_rt.media import MediaError, decode_media

for line in sys.stdin:
    request = json.loads(line)
    try:
        media = decode_media(request["path"], **request["options"])
    except MediaError as exc:
        result = {"kind": "media_error", "type": type(exc).__name__, "message": str(exc)}
    except BaseException as exc:
        result = {"kind": "crash", "type": type(exc).__name__, "traceback": traceback.format_exc()}
    else:
        problems = []
        f, a = media.frames, media.audio
        if f is not None and (f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3 or not len(f) or 0 in f.shape):
            problems.append(f"frames {f.shape} {f.dtype}")
        if a is not None and (a.dtype != np.float32 or a.ndim != 1 or not np.all(np.isfinite(a))):
            problems.append(f"audio {a.shape} {a.dtype} finite={bool(np.all(np.isfinite(a)))}")
        if request["options"].get("require_video") and f is None:
            problems.append("require_video but no frames")
        if request["options"].get("require_audio") and (a is None or not a.size):
            problems.append("require_audio but no audio")
        result = {"kind": "invalid" if problems else "ok", "problems": problems}
    print(json.dumps(result), flush=True)
"""


class DecodeWorker:
    """``decode_media`` in a separate process, one request at a time, each under a timeout."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True, bufsize=1)
        return self.proc

    def decode(self, path: Path, options: dict, timeout: float) -> dict:
        proc = self._start()
        proc.stdin.write(json.dumps({"path": str(path), "options": options}) + "\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            self.close()
            return {"kind": "hang"}
        line = proc.stdout.readline()
        if not line:  # the worker died (a segfault in native code)
            code = proc.wait()
            self.proc = None
            return {"kind": "died", "returncode": code}
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def worker():
    w = DecodeWorker()
    yield w
    w.close()


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("fuzz-media")
    mp4 = write_media(root / "a.mp4", frames_for(0, 0.6), 25.0, tone(0.6), 16000)
    wav = write_wav(root / "a.wav", seconds=0.3)
    return {".mp4": mp4.read_bytes(), ".wav": wav.read_bytes()}


@st.composite
def mutated(draw, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(sorted(seeds)))
    data = bytearray(seeds[suffix])
    n = len(data)
    # positions near the start (headers) and the end (the MP4 index) matter most; hypothesis favours small ints
    position = st.integers(0, n - 1) | st.integers(0, min(n - 1, 512)) | st.integers(max(0, n - 1024), n - 1)
    for pos, value in draw(st.lists(st.tuples(position, st.integers(0, 255)), max_size=24)):
        data[pos] = value
    if draw(st.booleans()):
        start = draw(position)
        data[start : start + draw(st.integers(0, 64))] = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return suffix, bytes(data)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-decode")


def test_decode_worker_sees_the_unmutated_files(worker, seed_files, fuzz_dir):
    for suffix, data in seed_files.items():
        path = fuzz_dir / f"seed{suffix}"
        path.write_bytes(data)
        assert worker.decode(path, {}, timeout=30)["kind"] == "ok"


@settings(FUZZ, max_examples=2 * EXAMPLES)
@given(data=st.data(), options=st.sampled_from([{}, {"max_seconds": 0.3}, {"require_video": True, "require_audio": True},
                                                {"video": False}, {"fps": 7.0, "sample_rate": 44100}]))
def test_decode_media_on_mutated_bytes(worker, seed_files, fuzz_dir, data, options):
    suffix, blob = data.draw(mutated(seed_files))
    path = fuzz_dir / f"m{suffix}"
    path.write_bytes(blob)
    if suffix == ".wav":
        options = {k: v for k, v in options.items() if k != "require_video"}
    start = time.monotonic()
    result = worker.decode(path, options, timeout=10)
    assert result["kind"] in ("ok", "media_error"), (result, time.monotonic() - start)
    if result["kind"] == "media_error":
        assert str(path) in result["message"]
