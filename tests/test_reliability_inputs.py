"""Reliability: bad inputs at every entry point give a clear, typed error; no crash, no hang, no stray files.

Each bad input is made once (real files written through PyAV, or real
checkpoint folders damaged on purpose) and fed to every entry point that
takes it: ``decode_media``, ``Predictor.predict``, ``Runtime.analyze`` /
``Runtime.stream``, ``load_checkpoint``, ``read_artifact``, ``load_backend``
and the ``migr-rt`` commands ``run``, ``demo``, ``export``, ``eval`` and
``train``. A clear error is an exception of the documented type whose
message names the input and says what is wrong; the CLI shows it as one line
(no traceback) with a non-zero status. Every call runs under a deadline, and
the folders around it (the working directory, the temp dir, the parent of the
output folder) are compared before and after.

What the other test files already cover (corrupted-byte decoding, tampered
``load_checkpoint``, escaping graph paths in ``read_artifact`` ...) is not
repeated here; this file covers the same faults across the other entry points.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from data_fixtures import frames_for, tone, write_wav
from swallowed_ctrl_c import python_where_sigint
from migr_rt.training.synth.corpus import SynthConfig, generate_corpus

from migr_rt.artifact import ArtifactError, read_artifact, read_manifest, sha256_of
from migr_rt.backends import load_backend
from migr_rt.cli import main
from migr_rt.media import (
    CorruptMediaError,
    MediaError,
    MediaNotFoundError,
    MissingStreamError,
    decode_media,
    write_media,
)
from migr_rt.model import CheckpointError, load_checkpoint
from migr_rt.bundled import default_checkpoint
from migr_rt.predict import Predictor
from migr_rt.runtime import Runtime, RuntimeConfig, SourceError, parse_source

# --------------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail (TimeoutError) instead of hanging: SIGALRM interrupts the call after ``seconds``."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: the call hangs")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def tree(root: Path) -> set[str]:
    """Every file and folder under ``root``, relative."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")} if root.exists() else set()


@pytest.fixture()
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run in an empty working directory with a private temp dir; both must be empty afterwards."""
    cwd, tmp = tmp_path / "cwd", tmp_path / "systmp"
    cwd.mkdir()
    tmp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield tmp_path
    assert tree(cwd) == set(), "files written into the working directory"
    assert tree(tmp) == set(), "temporary files left behind"


def cli(*args: str, timeout: float = 120) -> object:
    """``migr-rt ARGS`` in-process under a deadline; the result of click's runner."""
    with deadline(timeout):
        return CliRunner().invoke(main, [str(a) for a in args])


def assert_clear_cli_error(result, *needles: str, code: int = 1) -> None:
    """Exit status ``code``, every needle in the output, and no traceback."""
    out = result.output
    assert result.exit_code == code, f"exit {result.exit_code}: {out}\n{result.exception!r}"
    assert "Traceback" not in out, out
    if code != 0 and result.exception is not None:
        assert isinstance(result.exception, SystemExit), f"crashed: {result.exception!r}"
    for needle in needles:
        assert needle in out, f"{needle!r} not in: {out}"


def no_staging(parent: Path) -> list[str]:
    """Hidden (staging / partial) entries in ``parent``: there must be none after a failure."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".")) if parent.exists() else []


# --------------------------------------------------------------------------------------------- bad media


def _patch_wav_rate(path: Path, rate: int) -> Path:
    """Make a PCM WAV's fmt chunk claim ``rate`` Hz (byte rate to match)."""
    data = bytearray(path.read_bytes())
    fmt = data.find(b"fmt ")
    channels, bits = struct.unpack_from("<H", data, fmt + 10)[0], struct.unpack_from("<H", data, fmt + 22)[0]
    struct.pack_into("<I", data, fmt + 12, rate)
    struct.pack_into("<I", data, fmt + 16, rate * channels * bits // 8)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good and bad media files, each real (written through PyAV) or damaged on purpose."""
    root = tmp_path_factory.mktemp("media")
    good = write_media(root / "good.mp4", frames_for(0, 2.4), 25.0, tone(2.4), 16000)
    files = {"good": good}
    data = good.read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "empty.mp4").write_bytes(b"")
    (root / "garbage.mp4").write_bytes(b"this is not a video\n" * 50)
    files.update(truncated=root / "truncated.mp4", empty=root / "empty.mp4", garbage=root / "garbage.mp4")
    files["video_only"] = write_media(root / "video_only.mp4", frames_for(1, 2.4), 25.0)
    files["audio_only"] = write_wav(root / "audio_only.wav", seconds=2.4, freq=440.0)
    files["wav_192k"] = write_wav(root / "wav_192k.wav", seconds=2.4, sample_rate=192_000, freq=440.0)
    files["wav_0hz"] = _patch_wav_rate(write_wav(root / "wav_0hz.wav", seconds=1.0), 0)
    # AVIs whose PCM header claims 0 Hz (ffmpeg refuses to open it) and 738 MHz (it opens; decoding refuses it).
    for name, rate in (("avi_0hz", 0), ("avi_bad_rate", 738_213_504)):
        avi = write_media(root / f"{name}.avi", frames_for(2, 1.0), 25.0, tone(1.0), 16000, video_codec="mpeg4",
                          audio_codec="pcm_s16le")
        raw = bytearray(avi.read_bytes())
        strf = raw.find(b"strf", raw.find(b"auds"))
        struct.pack_into("<I", raw, strf + 12, rate)
        avi.write_bytes(bytes(raw))
        files[name] = avi
    tiny = np.stack([np.full((1, 1, 3), 40 + 6 * t, np.uint8) for t in range(30)])
    files["one_pixel"] = write_media(root / "one_pixel.mkv", tiny, 25.0, tone(1.2), 16000,
                                     pixel_format="yuv444p")
    return files


@pytest.fixture(scope="module")
def frames_8k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 7680x4320 frames (8K UHD) with audio: big, so only two."""
    rng = np.random.default_rng(0)
    frame = np.empty((4320, 7680, 3), np.uint8)
    frame[:] = rng.integers(0, 255, (1, 7680, 3), dtype=np.uint8)  # vertical stripes: cheap to encode
    frames = np.stack([frame, np.roll(frame, 16, axis=1)])
    path = tmp_path_factory.mktemp("8k") / "8k.mp4"
    return write_media(path, frames, 25.0, tone(0.08), 16000, video_options={"preset": "ultrafast"})


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(backend="torch")


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    with Runtime(backend="torch", config=RuntimeConfig(rationale=False)) as rt:
        yield rt


def _stream(runtime: Runtime, source: str, timeout: float = 60) -> list[dict]:
    with deadline(timeout):
        return list(runtime.stream(source))


# --- decode_media ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "error", "says"),
    [
        ("empty", CorruptMediaError, "empty (0 bytes)"),
        ("truncated", CorruptMediaError, "cannot be opened"),
        ("garbage", CorruptMediaError, "cannot be opened"),
        ("wav_0hz", CorruptMediaError, "cannot be opened"),
        ("avi_0hz", CorruptMediaError, "cannot be opened"),
        ("avi_bad_rate", CorruptMediaError, "sample rate 738213504 Hz is not plausible"),
    ],
)
def test_decode_media_refuses_bad_files_by_name(media, name, error, says):
    with deadline(20), pytest.raises(error) as info:
        decode_media(media[name])
    assert isinstance(info.value, MediaError) and info.value.path == str(media[name])
    assert str(media[name]) in str(info.value) and says in str(info.value)


def test_decode_media_missing_streams(media, tmp_path):
    with deadline(20):
        video_only = decode_media(media["video_only"])
        assert video_only.audio is None and video_only.frames.shape == (60, 64, 64, 3)
        with pytest.raises(MissingStreamError, match=r"video_only\.mp4: has no audio stream"):
            decode_media(media["video_only"], require_audio=True)
        audio_only = decode_media(media["audio_only"])
        assert audio_only.frames is None and abs(len(audio_only.audio) - 2.4 * 16000) < 400
        with pytest.raises(MissingStreamError, match=r"audio_only\.wav: has no video stream"):
            decode_media(media["audio_only"], require_video=True)
        with pytest.raises(MediaNotFoundError, match="does not exist"):
            decode_media(tmp_path / "nope.mp4")
        with pytest.raises(CorruptMediaError, match="is a directory"):
            decode_media(tmp_path)
        for bad in ({"fps": 0}, {"fps": float("nan")}, {"sample_rate": 0}, {"sample_rate": -16000}):
            with pytest.raises(ValueError, match=next(iter(bad))):
                decode_media(media["good"], **bad)


def _peak_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / rate)[int(spectrum.argmax())])


def test_192khz_audio_is_resampled_not_refused(media):
    with deadline(20):
        out = decode_media(media["wav_192k"], sample_rate=16000)
    assert out.sample_rate == 16000 and out.audio.dtype == np.float32
    assert abs(len(out.audio) - 2.4 * 16000) < 400
    assert np.all(np.isfinite(out.audio)) and 0.25 < np.abs(out.audio).max() < 0.35
    assert abs(_peak_hz(out.audio, 16000) - 440.0) < 5.0  # the same tone, at the new rate


def test_one_pixel_and_8k_frames_decode(media, frames_8k):
    with deadline(20):
        tiny = decode_media(media["one_pixel"])
    assert tiny.frames.shape == (30, 1, 1, 3) and tiny.frames.dtype == np.uint8
    with deadline(60):
        big = decode_media(frames_8k)
    assert big.frames.shape == (2, 4320, 7680, 3) and big.frames.dtype == np.uint8


# --- Predictor.predict and Runtime.analyze on arrays -----------------------------------------------------


def _bad_arrays() -> list[tuple[str, np.ndarray | None, np.ndarray | None, str]]:
    frames = frames_for(0, 2.0)
    audio = tone(2.0)
    nan_audio, inf_audio = audio.copy(), audio.copy()
    nan_audio[100] = np.nan
    inf_audio[-1] = -np.inf
    float_frames = frames.astype(np.float32)
    float_frames[0, 0, 0, 0] = np.nan
    return [
        ("nan audio", frames, nan_audio, "audio .*NaN or Inf"),
        ("inf audio", frames, inf_audio, "audio .*NaN or Inf"),
        ("all-nan audio", None, np.full(32000, np.nan, np.float32), "audio .*NaN or Inf"),
        ("float frames with nan", float_frames, audio, r"frames must be .*uint8"),
        ("grey frames", frames[..., 0], audio, r"frames must be .*\(.*H, W, 3\)"),
        ("rgba frames", np.concatenate([frames, frames[..., :1]], axis=-1), audio, r"frames must be .*\(.*H, W, 3\)"),
    ]


@pytest.mark.parametrize(("case", "frames", "audio", "message"), _bad_arrays(), ids=[c[0] for c in _bad_arrays()])
def test_bad_arrays_are_value_errors_naming_the_input(predictor, runtime, case, frames, audio, message):
    with deadline(20):
        with pytest.raises(ValueError, match=message):
            predictor.predict(frames, audio)
        with pytest.raises(ValueError, match=message):
            runtime.analyze(frames, audio)


@pytest.mark.parametrize("fps", [0.0, -25.0, float("nan"), float("inf")])
def test_bad_fps_is_a_value_error(predictor, runtime, fps):
    frames, audio = frames_for(0, 2.0), tone(2.0)
    with deadline(20):
        with pytest.raises(ValueError, match="fps"):
            predictor.predict(frames, audio, fps=fps)
        with pytest.raises(ValueError, match="fps"):
            runtime.analyze(frames, audio, fps=fps)


@pytest.mark.parametrize("start", [-1.0, float("nan"), float("inf")])
def test_bad_window_start_is_a_value_error(runtime, start):
    with deadline(20), pytest.raises(ValueError, match="window_start"):
        runtime.analyze(frames_for(0, 2.0), tone(2.0), window_start=start)


def test_one_pixel_frames_are_analysed_without_a_face(predictor, runtime, media):
    decoded = decode_media(media["one_pixel"])
    with deadline(20):
        pred = predictor.predict(decoded.frames, decoded.audio)
        event = runtime.analyze(decoded.frames, decoded.audio)
    assert not pred.face_found and pred.present == {"visual": False, "audio": True} and pred.dominant == "audio"
    assert event["missing"] == {"visual": "no_face"} and event["label"] in event["probs"]


def test_8k_frames_are_analysed(predictor, runtime, frames_8k):
    decoded = decode_media(frames_8k)
    with deadline(60):
        pred = predictor.predict(decoded.frames, decoded.audio)
        event = runtime.analyze(decoded.frames, decoded.audio)
    assert pred.present["audio"] and pred.label in predictor.config.labels
    assert event["face"]["frames_sampled"] == runtime.plan.frames_per_window and event["label"] is not None


# --- Runtime.stream and `migr-rt run` on bad files ------------------------------------------------------


@pytest.mark.parametrize("name", ["truncated", "garbage", "wav_0hz", "avi_0hz"])
def test_stream_refuses_an_unopenable_file_by_name(runtime, media, name):
    with deadline(30), pytest.raises(SourceError, match=re.escape(str(media[name]))):
        list(runtime.stream(str(media[name])))


def test_stream_of_a_file_whose_audio_cannot_decode_ends_with_source_lost(runtime, media):
    events = _stream(runtime, str(media["avi_bad_rate"]))
    assert events[0]["type"] == "start" and events[-1]["type"] == "end"
    assert events[-1]["reason"] == "source_lost"
    errors = [e["message"] for e in events if e["type"] == "status" and e["level"] == "error"]
    assert errors and "avi_bad_rate.avi" in errors[0] and "sample rate 738213504 Hz" in errors[0]


def test_stream_of_audio_without_video_and_192khz(runtime, media):
    for name in ("audio_only", "wav_192k"):
        events = _stream(runtime, str(media[name]))
        windows = [e for e in events if e["type"] == "window"]
        assert events[-1]["reason"] == "end_of_stream" and len(windows) == 1, name
        assert windows[0]["missing"] == {"visual": "no_video"} and windows[0]["dominant"] == "audio", name


def test_stream_of_one_pixel_and_8k_video(runtime, media, frames_8k):
    events = _stream(runtime, str(media["one_pixel"]))
    windows = [e for e in events if e["type"] == "window"]
    assert events[-1]["reason"] == "end_of_stream" and windows
    assert all(e["missing"] == {"visual": "no_face"} for e in windows)
    events = _stream(runtime, str(frames_8k), timeout=120)
    assert events[-1]["reason"] == "end_of_stream"  # 0.08 s: shorter than a window, analysed as one
    windows = [e for e in events if e["type"] == "window"]
    assert len(windows) == 1 and windows[0]["face"]["frames_sampled"] == runtime.plan.frames_per_window


def test_looped_replay_of_a_file_whose_audio_outlasts_its_video(runtime, tmp_path):
    """0.2 s more audio than video per pass: the streams are realigned at every loop, not left to drift apart
    (then every window's audio has left the buffer: all windows dropped, the stream silently stalls)."""
    import threading

    path = write_media(tmp_path / "long_audio.mp4", frames_for(0, 1.0), 25.0, tone(1.2), 16000)
    taps = {"frames": 0, "samples": 0}

    def frame_tap(index, frame):
        taps["frames"] += 1

    def audio_tap(samples):
        taps["samples"] += len(samples)

    stop = threading.Event()
    windows = []
    with deadline(30):
        for event in runtime.stream(parse_source(str(path), loop=True), stop=stop,
                                    frame_tap=frame_tap, audio_tap=audio_tap):
            if event["type"] == "window":
                windows.append(event)
                if len(windows) == 40:  # 20 s of media: 17 passes, 3.4 s of drift unaligned
                    stop.set()
    assert [e["window"] for e in windows] == list(range(40))
    assert windows[-1]["drops"]["windows"] == 0 and windows[-1]["drops"]["frames"] == 0
    assert all(e["present"]["audio"] for e in windows)
    # Stopped at any moment of a pass, the audio may lead by that pass's extra 0.2 s plus one AAC frame
    # (64 ms); left unaligned, 17 passes would have drifted 3.4 s apart.
    assert abs(taps["samples"] / 16000 - taps["frames"] / 25) < 0.3, taps


@pytest.mark.parametrize(
    ("name", "says"),
    [("empty", "file is empty"), ("truncated", "cannot be opened"), ("garbage", "cannot be opened"),
     ("wav_0hz", "cannot be opened"), ("avi_0hz", "cannot be opened")],
)
def test_cli_run_refuses_bad_files_in_one_line(sandbox, media, name, says):
    result = cli("run", "--source", media[name], "--json", "--no-rationale", "--backend", "torch")
    assert_clear_cli_error(result, str(media[name]), says)
    assert result.stdout == "" or all(json.loads(line)["type"] != "window" for line in result.stdout.splitlines())


def test_cli_run_with_a_source_that_fails_mid_way_exits_3(sandbox, media):
    result = cli("run", "--source", media["avi_bad_rate"], "--json", "--no-rationale", "--backend", "torch")
    assert result.exit_code == 3 and "Traceback" not in result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["type"] == "end" and events[-1]["reason"] == "source_lost"


# --------------------------------------------------------------------------------------------- bad model folders


def _manifest(graph_file: str = "{name}.onnx", tokenizer_files: list[str] | None = None) -> dict:
    from migr_rt.artifact import GRAPH_NAMES

    config = json.loads((default_checkpoint() / "config.json").read_text())
    tensor = {"name": "x", "dtype": "float32", "shape": ["batch", 3]}
    return {
        "format_version": 1, "format": "onnx", "precision": "fp32", "model_config": config,
        "source_checkpoint": {"path": "x", "sha256": "0" * 64}, "tools": {"migr_rt": "0.1.0"}, "opset": 18,
        "tokenizer_files": tokenizer_files or [],
        "graphs": {g: {"file": graph_file.format(name=g), "sha256": "0" * 64, "inputs": [tensor], "outputs": [tensor]}
                   for g in GRAPH_NAMES},
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders passed where a checkpoint or artifact folder is expected; only ``good`` is one."""
    root = tmp_path_factory.mktemp("models")
    good = root / "good"
    shutil.copytree(default_checkpoint(), good)
    out = {"good": good}
    (root / "empty").mkdir()
    out["empty"] = root / "empty"
    (root / "a_file").write_bytes(b"not a folder\n")
    out["a_file"] = root / "a_file"
    hf = root / "hf_pickle"  # a Hugging Face style folder: config.json and pickled weights, no record
    hf.mkdir()
    shutil.copyfile(good / "config.json", hf / "config.json")
    (hf / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    out["hf_pickle"] = hf
    tampered = root / "tampered"
    shutil.copytree(good, tampered)
    weights = bytearray((tampered / "model.safetensors").read_bytes())
    weights[len(weights) // 2] ^= 0x01  # one bit of one weight
    (tampered / "model.safetensors").write_bytes(bytes(weights))
    out["tampered"] = tampered
    for name, graph_file in (("escape_up", "../{name}.onnx"), ("escape_abs", "/etc/{name}.onnx")):
        folder = root / name
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps(_manifest(graph_file)))
        (root / f"{name}.x").write_text("")  # something outside for the escape to find
        out[name] = folder
    bad_json = root / "bad_manifest"
    bad_json.mkdir()
    (bad_json / "manifest.json").write_text('{"format_version": 1, "format": ')
    out["bad_manifest"] = bad_json
    return out


#: folder -> (error type, text in its message) for loaders of model folders
MODEL_FAULTS = {
    "empty": (CheckpointError, "checksums.json: missing"),
    "a_file": (CheckpointError, "not a local checkpoint folder"),
    "hf_pickle": (CheckpointError, "checksums.json: missing"),
    "tampered": (CheckpointError, "model.safetensors: SHA-256 mismatch"),
    "escape_up": (ArtifactError, "leaves the artifact folder"),
    "escape_abs": (ArtifactError, "must be relative to the artifact folder"),
    "bad_manifest": (ArtifactError, "not a readable JSON manifest"),
}


@pytest.mark.parametrize("name", sorted(MODEL_FAULTS))
def test_model_folder_faults_are_refused_by_every_loader(models, name):
    error, says = MODEL_FAULTS[name]
    folder = models[name]
    loaders = [lambda: load_backend(folder), lambda: load_backend(folder, "torch" if error is CheckpointError
                                                                             else "onnxruntime"),
               lambda: Predictor(folder), lambda: Runtime(folder)]
    if error is CheckpointError:
        loaders.append(lambda: load_checkpoint(folder))
    else:
        loaders.append(lambda: read_artifact(folder))
    for load in loaders:
        with deadline(30), pytest.raises(error) as info:
            load()
        assert says in str(info.value) and folder.name in str(info.value)


def test_artifact_manifest_escapes_and_symlinks(tmp_path):
    """Tokenizer paths and symlinked graphs are held to the folder too (graph paths: test_artifact.py)."""
    from migr_rt.artifact import GRAPH_NAMES

    folder = tmp_path / "art"
    folder.mkdir()
    manifest = _manifest()
    for g in GRAPH_NAMES:
        (folder / f"{g}.onnx").write_bytes(g.encode())
        manifest["graphs"][g]["sha256"] = sha256_of(folder / f"{g}.onnx")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert read_artifact(folder).format == "onnx"  # a sound folder (the graphs are placeholders)

    for rel, says in (("../tokenizer.json", "leaves the artifact folder"), ("/etc/passwd", "must be relative"),
                      ("", "must be relative"), ("a\x00b", "must be relative")):
        (folder / "manifest.json").write_text(json.dumps({**manifest, "tokenizer_files": [rel]}))
        with pytest.raises(ArtifactError, match=says):
            read_artifact(folder)
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(b"scoring")
    (folder / "scoring.onnx").unlink()
    (folder / "scoring.onnx").symlink_to(outside)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="scoring.onnx.* leaves the artifact folder"):
        read_artifact(folder)


@pytest.mark.parametrize("name", sorted(MODEL_FAULTS))
def test_cli_demo_and_run_refuse_bad_model_folders_in_one_line(sandbox, models, name):
    _, says = MODEL_FAULTS[name]
    if name == "a_file":  # click checks --checkpoint is a folder before migr-rt sees it
        result = cli("demo", "--checkpoint", models[name])
        assert_clear_cli_error(result, "is a file", code=2)
    else:
        assert_clear_cli_error(cli("demo", "--checkpoint", models[name]), says, models[name].name)
    result = cli("run", "--source", "demo", "--checkpoint", models[name], "--json", "--max-windows", "1")
    assert_clear_cli_error(result, MODEL_FAULTS[name][1], models[name].name)
    assert result.stdout == ""


@pytest.mark.parametrize("name", ["empty", "a_file", "hf_pickle", "tampered", "escape_up", "bad_manifest"])
def test_cli_export_refuses_bad_checkpoints_and_writes_nothing(sandbox, models, name):
    out = sandbox / "exports" / "art"
    result = cli("export", "--checkpoint", models[name], "--out", out, "--no-parity")
    says = MODEL_FAULTS[name][1] if MODEL_FAULTS[name][0] is CheckpointError else "is an exported artifact"
    assert_clear_cli_error(result, says)
    assert not out.exists() and no_staging(out.parent) == []


def test_cli_export_out_must_be_a_folder(sandbox, models):
    target = sandbox / "a_file.onnx"
    target.write_text("keep me")
    result = cli("export", "--checkpoint", models["good"], "--out", target)
    assert_clear_cli_error(result, "is a file", code=2)
    assert target.read_text() == "keep me" and no_staging(sandbox) == []


# --------------------------------------------------------------------------------------------- eval and train


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny synthetic corpus and damaged copies of it."""
    root = tmp_path_factory.mktemp("corpora")
    good = root / "good"
    generate_corpus(SynthConfig(n=2, seed=5), good)
    out = {"good": good}
    truncated = root / "truncated_clip"
    shutil.copytree(good, truncated)
    first = json.loads((good / "manifest.jsonl").read_text().splitlines()[0])["file"]
    clip = truncated / first
    clip.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    out["truncated_clip"] = truncated
    bad_line = root / "bad_manifest"
    shutil.copytree(good, bad_line)
    with open(bad_line / "manifest.jsonl", "a") as fh:
        fh.write('{"id": "x", "file": \n')
    out["bad_manifest"] = bad_line
    binary = root / "binary_manifest"
    shutil.copytree(good, binary)
    (binary / "manifest.jsonl").write_bytes(b'{"id": "\xff\xfe"}\n')
    out["binary_manifest"] = binary
    return out


#: corpus -> text the error must carry (the file, and the line where there is one)
DATA_FAULTS = {
    "missing": "does not exist",
    "bad_manifest": "manifest.jsonl:3: not valid JSON",
    "binary_manifest": "manifest.jsonl",
    "truncated_clip": "cannot be opened",
}


def _data(corpora: dict[str, Path], name: str, sandbox: Path) -> Path:
    return sandbox / "no-such-corpus" if name == "missing" else corpora[name]


@pytest.mark.parametrize("name", sorted(DATA_FAULTS))
def test_cli_eval_refuses_bad_data_in_one_line(sandbox, models, corpora, name):
    out = sandbox / "evals" / "e"
    data = _data(corpora, name, sandbox)
    result = cli("eval", "--checkpoint", models["good"], "--data", data, "--out", out, "--max-new-tokens", "4")
    assert_clear_cli_error(result, DATA_FAULTS[name])
    if name != "truncated_clip":  # a clip that fails mid-extraction: the output folder may hold its cache
        assert not out.exists()
    assert no_staging(out.parent) == [] and not (models["good"].parent / "good.eval").exists()


@pytest.mark.parametrize("name", ["empty", "a_file", "hf_pickle", "tampered", "escape_up"])
def test_cli_eval_refuses_bad_checkpoints_before_reading_data(sandbox, models, corpora, name):
    out = sandbox / "evals" / "e"
    result = cli("eval", "--checkpoint", models[name], "--data", corpora["good"], "--out", out)
    says = MODEL_FAULTS[name][1] if MODEL_FAULTS[name][0] is CheckpointError else "is an exported artifact"
    assert_clear_cli_error(result, "--checkpoint", says)
    assert not out.exists() and not (models[name].parent / f"{name}.eval").exists()


@pytest.mark.parametrize("recipe", ["base", "migr"])
@pytest.mark.parametrize("name", sorted(DATA_FAULTS))
def test_cli_train_refuses_bad_data_and_leaves_nothing_behind(sandbox, corpora, recipe, name):
    out = sandbox / "runs" / "model"
    args = ["train", "--recipe", recipe, "--data", _data(corpora, name, sandbox), "--out", out, "--steps", "1"]
    if recipe == "migr":
        args += ["--smoke", "--sft-steps", "1", "--grpo-steps", "1"]
    result = cli(*args, timeout=180)
    assert_clear_cli_error(result, DATA_FAULTS[name])
    assert tree(out.parent) == set(), "a failed run leaves no checkpoint, work or cache folder"


def test_cli_train_out_must_be_a_folder(sandbox, corpora):
    target = sandbox / "model.bin"
    target.write_text("keep me")
    result = cli("train", "--recipe", "base", "--data", corpora["good"], "--out", target, "--steps", "1")
    assert_clear_cli_error(result, "is a file", code=2)
    assert target.read_text() == "keep me"


def test_cli_train_out_under_a_file_is_a_clear_error(sandbox, corpora):
    blocker = sandbox / "blocker"
    blocker.write_text("keep me")
    result = cli("train", "--recipe", "base", "--data", corpora["good"], "--out", blocker / "model", "--steps", "1")
    assert_clear_cli_error(result, "blocker")
    assert blocker.read_text() == "keep me"


def test_manifest_reader_errors_name_the_file(corpora):
    from migr_rt.training.synth.reader import ManifestError
    from migr_rt.training.synth.reader import read_manifest as read_corpus_manifest

    with pytest.raises(ManifestError, match=r"manifest\.jsonl:1: not UTF-8 text"):
        read_corpus_manifest(corpora["binary_manifest"] / "manifest.jsonl")
    with pytest.raises(ArtifactError, match="not an artifact folder"):
        read_manifest(corpora["good"] / "manifest.jsonl")


def test_ctrl_c_during_export_leaves_no_staging_folder(tmp_path, models):
    """Interrupted while tracing graphs: no artifact, and neither its staging nor its work folder is left."""
    import subprocess
    import time

    parent = tmp_path / "exports"
    out = parent / "art"
    proc = subprocess.Popen(python_where_sigint("default_int_handler", "migr_rt.cli", "export", "--checkpoint",
                                                str(models["good"]), "--out", str(out)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        deadline_at = time.monotonic() + 60
        while not any(p.name.startswith(".art.staging-") for p in (parent.iterdir() if parent.exists() else [])):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline_at, "export never started"
            time.sleep(0.02)
        time.sleep(1.0)  # inside graph tracing
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, output
    assert "Aborted" in output and "Traceback" not in output, output
    assert tree(parent) == set(), f"left behind: {sorted(tree(parent))}"
