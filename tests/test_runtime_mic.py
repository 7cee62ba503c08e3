"""The microphone input through real ALSA, without a sound card.

PyAV's own alsa demuxer opens a capture PCM defined with ALSA's built-in ``file``
plugin, which hands the capturing program the samples of a raw file (its slave is
the ``null`` device): to FFmpeg and to the runtime this is a live microphone. For
the streaming test the file is a named pipe that the test fills at the real rate,
because ``file`` + ``null`` deliver as fast as they are read, which no microphone does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import av
import jsonschema
import numpy as np
import pytest
from migr_rt.training.synth.corpus import SynthConfig, render_clip

from migr_rt.media import write_media
from migr_rt.media.decode import decode_media, iter_decoded
from migr_rt.runtime import EVENT_SCHEMA, Runtime, RuntimeConfig, parse_source
from migr_rt.runtime.alsa import AlsaConfigError, alsa_environment, bundled_libasound
from migr_rt.runtime.sources import SourceError

MIC_RATE, MIC_LAYOUT = 48000, "stereo"  # what FFmpeg's alsa demuxer asks the device for by default
PCM = "migr_test_mic"


def _to_s16_stereo_48k(audio: np.ndarray) -> bytes:
    """The voice as the device would deliver it: interleaved s16, 48 kHz, two channels."""
    frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = 16000
    resampler = av.AudioResampler(format="s16", layout=MIC_LAYOUT, rate=MIC_RATE)
    chunks = [f.to_ndarray() for f in resampler.resample(frame)] + [f.to_ndarray() for f in resampler.resample(None)]
    return np.concatenate(chunks, axis=1).astype("<i2").tobytes()


def _asound_conf(raw: Path, name: str = PCM) -> str:
    return textwrap.dedent(f"""\
        pcm.{name} {{
            type file
            slave.pcm {{ type null }}
            file "/dev/null"
            infile "{raw}"
            format "raw"
        }}
        """)


@pytest.fixture(scope="module")
def mic(tmp_path_factory):
    """A video-only MP4 of a synthetic talking face, and its voice behind an ALSA capture PCM."""
    folder = tmp_path_factory.mktemp("mic")
    clip = render_clip(SynthConfig(n=1, seed=7, duration=4.0), 1)
    video = write_media(folder / "face.mp4", clip.frames, 25, None)
    raw = folder / "voice.raw"  # one second of silence after the voice: the stream must outlast the last window
    raw.write_bytes(_to_s16_stereo_48k(np.concatenate([clip.audio, np.zeros(16000, np.float32)])))
    pipe = folder / "voice.fifo"
    os.mkfifo(pipe)
    conf = folder / "asound.conf"
    conf.write_text(_asound_conf(raw) + _asound_conf(pipe, PCM + "_live"))
    return video, raw, conf


def _play_at_the_real_rate(raw: Path, pipe: Path) -> threading.Thread:
    """Write ``raw`` into the pipe the ALSA device reads, 20 ms at a time, at 48 kHz; starts when it is opened."""
    def play() -> None:
        data, step = raw.read_bytes(), MIC_RATE * 2 * 2 // 50
        fd = os.open(pipe, os.O_WRONLY)  # blocks until the capture opens the device
        try:
            start = time.monotonic()
            for i in range(0, len(data), step):
                os.write(fd, data[i:i + step])
                time.sleep(max(0.0, start + (i + step) / (MIC_RATE * 4) - time.monotonic()))
        except BrokenPipeError:
            pass  # the run ended before the voice did
        finally:
            os.close(fd)

    player = threading.Thread(target=play, daemon=True)
    player.start()
    return player


def _release(pipe: Path) -> None:
    """Let a player still waiting for a reader go (the run failed before opening the device)."""
    fd = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    time.sleep(0.1)
    os.close(fd)


def _voice_as_the_runtime_hears_it(raw: Path) -> np.ndarray:
    """The raw file decoded the way the capture thread decodes the device: s16 stereo 48 kHz -> mono float 16 kHz."""
    with av.open(str(raw), format="s16le", options={"sample_rate": str(MIC_RATE), "ch_layout": MIC_LAYOUT}) as c:
        return np.concatenate([d for _, d in iter_decoded(c, str(raw), fps=25, sample_rate=16000)])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALSA_")}
    return {**env, **extra}


def _own_config(conf: Path) -> dict[str, str]:
    """Our top file and its folder: nothing from the machine's ALSA configuration is needed or read."""
    return _env(ALSA_CONFIG_PATH=str(conf), ALSA_CONFIG_DIR=str(conf.parent))


def test_cli_with_an_alsa_microphone_hears_the_voice_and_matches_analyze(mic):
    video, raw, conf = mic
    pipe = raw.with_suffix(".fifo")
    player = _play_at_the_real_rate(raw, pipe)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "migr_rt.cli", "run", "--source", str(video), "--mic", f"alsa:{PCM}_live",
             "--json", "--no-rationale", "--backend", "torch", "--no-face-tracking", "--max-windows", "5"],
            capture_output=True, text=True, timeout=300, env=_own_config(conf))
    finally:
        if player.is_alive():
            _release(pipe)
        player.join(timeout=10)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    for event in events:
        jsonschema.validate(event, EVENT_SCHEMA)
    windows = [e for e in events if e["type"] == "window"]
    assert [e["window"] for e in windows] == list(range(5)) and events[-1]["drops"]["windows"] == 0
    assert all(e["present"] == {"visual": True, "audio": True} for e in windows)  # the file has no audio track
    frames = decode_media(video, fps=25, sample_rate=16000).frames
    voice = _voice_as_the_runtime_hears_it(raw)
    with Runtime(backend="torch", config=RuntimeConfig(face_tracking=False)) as runtime:
        for event in windows:
            ref = runtime.analyze(frames, voice, fps=25, window_start=event["t_start"])
            assert event["label"] == ref["label"] and event["dominant"] == ref["dominant"]
            for m in ref["mi"]:
                assert event["mi"][m] == pytest.approx(ref["mi"][m], abs=1e-4)
        silent = runtime.analyze(frames, None, fps=25)  # and the voice matters: without it the answer changes
    assert silent["mi"] != windows[0]["mi"]


@pytest.mark.skipif(bundled_libasound() is None, reason="this PyAV links the system's libasound (nothing to configure)")
def test_bundled_libasound_is_pointed_at_a_system_configuration(mic, tmp_path):
    # Without ALSA_CONFIG_DIR the wheel's libasound looks for alsa.conf in its build machine's folder and
    # knows no device at all; mic_input finds the configuration folder and sets it before the first open.
    _, raw, _ = mic
    system = tmp_path / "share-alsa"
    system.mkdir()
    (system / "alsa.conf").write_text(_asound_conf(raw))
    script = textwrap.dedent(f"""
        import os, sys
        import migr_rt.runtime.alsa as alsa
        from migr_rt.runtime.sources import SourceError, mic_input
        alsa.SYSTEM_CONFIG_DIRS = ({str(tmp_path / 'absent')!r}, {str(system)!r})
        if sys.argv[1] == "skip":
            alsa.configure_alsa = lambda *a, **k: {{}}
            import migr_rt.runtime.sources as sources
            sources.configure_alsa = alsa.configure_alsa
        try:  # a device name the library cannot resolve is refused here already
            spec, refused = mic_input("alsa:{PCM}"), None
        except SourceError as exc:
            spec, refused = None, exc
        print(os.environ.get("ALSA_CONFIG_DIR"))
        try:
            if refused is not None:
                raise refused
            spec.open(timeout=3).close()
            print("opened")
        except SourceError as exc:
            print("failed:", exc)
        """)
    found = subprocess.run([sys.executable, "-c", script, "configure"], capture_output=True, text=True, timeout=60,
                           env=_env())
    assert found.stdout.split("\n")[:2] == [str(system.resolve()), "opened"], found.stderr
    if Path("/tmp/vendor/share/alsa").exists():
        return  # someone linked the wheel's build folder into place: the control below would open the device too
    without = subprocess.run([sys.executable, "-c", script, "skip"], capture_output=True, text=True, timeout=60,
                             env=_env())
    assert without.stdout.split("\n")[0] == "None" and "failed: microphone alsa:" in without.stdout, without.stderr


def test_alsa_environment_keeps_the_users_choice_and_says_what_is_missing(tmp_path):
    lib = tmp_path / "av.libs" / "libasound-0123abcd.so.2.0.0"
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "alsa.conf").write_text("")
    dirs = [tmp_path / "none", tmp_path / "good"]
    plugins = {"ALSA_PLUGIN_DIR": str(lib.parent)}  # never the build machine's /tmp/vendor/lib/alsa-lib
    assert alsa_environment({}, lib, dirs) == {**plugins, "ALSA_CONFIG_DIR": str(tmp_path / "good")}
    # ALSA_CONFIG_PATH names the top file only: the folder its includes come from is still needed
    assert alsa_environment({"ALSA_CONFIG_PATH": "/etc/my.conf"}, lib, dirs) == {
        **plugins, "ALSA_CONFIG_DIR": str(tmp_path / "good")}
    assert alsa_environment({"ALSA_CONFIG_PATH": "/etc/my.conf"}, lib, [tmp_path / "none"]) == plugins
    assert alsa_environment({"ALSA_CONFIG_DIR": "/opt/alsa", "ALSA_PLUGIN_DIR": "/opt/plugins"}, lib, dirs) == {}
    assert alsa_environment({}, None, dirs) == {}  # a PyAV linked against the system's libasound
    with pytest.raises(AlsaConfigError, match=r"libasound-0123abcd.*none/alsa\.conf missing.*libasound2-data"):
        alsa_environment({}, lib, [tmp_path / "none"])
    with pytest.raises(AlsaConfigError, match="relative"):
        alsa_environment({"ALSA_CONFIG_DIR": "share/alsa"}, lib, dirs)


def test_microphone_specs_that_cannot_work_are_refused_up_front(mic, tmp_path):
    video, _, conf = mic
    with pytest.raises(SourceError, match="expected alsa:DEVICE"):
        parse_source(str(video), mic="default")
    if "pulse" not in av.formats_available:  # PyAV wheels: FFmpeg built without libpulse
        with pytest.raises(SourceError, match=r"pulse:default: this PyAV's FFmpeg has no pulse input.*alsa:DEVICE"):
            parse_source(str(video), mic="pulse:default")
    # A device ALSA does not know: the run fails when it opens its inputs, naming the microphone (exit status 1).
    result = subprocess.run(
        [sys.executable, "-m", "migr_rt.cli", "run", "--source", str(video), "--mic", "alsa:no_such_pcm", "--json"],
        capture_output=True, text=True, timeout=120, env=_own_config(conf))
    assert result.returncode == 1
    assert "microphone alsa:no_such_pcm: cannot be opened" in result.stderr
    assert ("/dev/snd is missing" in result.stderr) == (not Path("/dev/snd").exists())


def test_a_microphone_that_cannot_work_fails_in_plain_words_without_alsa_lib_lines(mic, tmp_path):
    video, _, conf = mic
    own = tmp_path / "asound.conf"  # "broken" resolves, and fails to open: its slave does not exist
    own.write_text(conf.read_text() + 'pcm.broken { type plug slave.pcm "no_such_pcm" }\n')
    env = _env(ALSA_CONFIG_PATH=str(own), ALSA_CONFIG_DIR=str(conf.parent))
    run = [sys.executable, "-m", "migr_rt.cli", "run", "--source", str(video), "--json"]
    # A name ALSA cannot resolve is refused before the model is looked for (the checkpoint named does not exist).
    early = subprocess.run(run + ["--mic", "alsa:no_such_pcm", "--checkpoint", str(tmp_path / "no-model")],
                           capture_output=True, text=True, timeout=120, env=env)
    assert early.returncode == 1 and early.stdout == ""
    assert early.stderr.startswith("migr-rt run: microphone alsa:no_such_pcm: cannot be opened: ALSA cannot resolve "
                                   "the device name 'no_such_pcm' (No such file or directory: a name it does not "
                                   "know, or one whose sound card is not there)"), early.stderr
    assert early.stderr.count("\n") == 1, early.stderr  # that line only
    # One that resolves fails when the stream opens it: FFmpeg's reason in words, and none of alsa-lib's own lines
    # ("ALSA lib pcm.c:2722:(snd_pcm_open_noupdate) Unknown PCM no_such_pcm") on stderr.
    late = subprocess.run(run + ["--mic", "alsa:broken", "--no-rationale", "--backend", "torch"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert late.returncode == 1 and "ALSA lib" not in late.stderr, late.stderr
    said = ("migr-rt run: microphone alsa:broken: cannot be opened: the device cannot be opened (busy, unplugged or "
            "not a capture device) (FFmpeg: cannot open audio device broken (No such file or directory))")
    assert said in late.stderr
