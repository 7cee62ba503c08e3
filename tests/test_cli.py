"""The console script: subcommands, honest stubs, synth and demo end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from migr_rt.training.synth.reader import read_manifest

from migr_rt.cli import main
from migr_rt.model import load_checkpoint, save_checkpoint


def test_console_script_lists_the_subcommands():
    out = subprocess.run([sys.executable, "-m", "migr_rt.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("demo", "synth", "data", "train", "eval", "export", "devices", "run", "bench"):
        assert f"  {command} " in out


@pytest.mark.parametrize("verbose, level, first", [([], "ERROR", ""), (["-vv"], "WARNING", ""),
                                                   ([], "ERROR", "import huggingface_hub.constants")])
def test_the_cli_quiets_transformers_without_importing_it(verbose, level, first):
    # importing transformers costs about a second on a small CPU; `devices` or a run on an exported artifact never
    # need it, but what loads it later must still be quiet below -vv and draw no progress bars; huggingface_hub reads
    # its variable on import, so one imported before (by a caller of main) is told directly
    probe = (f"import logging, sys\n{first}\n"
             "from migr_rt.cli import main\n"
             f"main([*{verbose!r}, 'devices', '--json'], standalone_mode=False)\n"
             "assert 'transformers' not in sys.modules, 'transformers was imported'\n"
             "from transformers.utils import logging as hf_logging\n"
             "print(logging.getLevelName(hf_logging.get_verbosity()), hf_logging.is_progress_bar_enabled())")
    env = {k: v for k, v in os.environ.items() if k not in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == f"{level} False"


def test_run_without_a_camera_fails_fast_and_suggests_the_demo(tmp_path):
    if Path("/dev/video0").exists():
        pytest.skip("this machine has a camera at /dev/video0")
    # Fast means: the camera is checked before any model is loaded. A checkpoint that does not exist
    # would be the error if loading came first (a timed assertion flaked on a loaded CI host).
    missing = tmp_path / "no-such-checkpoint"
    result = subprocess.run([sys.executable, "-m", "migr_rt.cli", "run", "--camera", "0", "--checkpoint", str(missing)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "/dev/video0" in result.stderr and "--source demo" in result.stderr
    assert str(missing) not in result.stderr


def test_run_save_into_a_missing_folder_creates_it_and_says_so(tmp_path):
    target = tmp_path / "new" / "dir" / "out.mp4"
    result = subprocess.run([sys.executable, "-m", "migr_rt.cli", "run", "--source", "demo", "--json", "--no-rationale",
                             "--max-windows", "1", "--save", str(target)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"migr-rt run: --save {target}: created the folder {target.parent}\n" in result.stderr
    assert target.is_file() and target.stat().st_size > 1000
    # an existing folder is used without a word (a checkpoint that does not exist ends the run after the check)
    again = subprocess.run([sys.executable, "-m", "migr_rt.cli", "run", "--source", "demo", "--save",
                            str(target.with_name("again.mp4")), "--checkpoint", str(tmp_path / "none")],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "created" not in again.stderr and str(tmp_path / "none") in again.stderr


def test_synth_writes_clips_and_manifest(tmp_path):
    result = CliRunner().invoke(main, ["synth", "--n", "3", "--out", str(tmp_path / "c"), "--seed", "4"])
    assert result.exit_code == 0, result.output
    records = read_manifest(tmp_path / "c" / "manifest.jsonl")
    assert len(records) == 3
    assert all((tmp_path / "c" / r["file"]).stat().st_size > 1000 for r in records)


def test_synth_logs_progress_lines_and_names_what_differs_in_an_existing_corpus(tmp_path):
    result = CliRunner().invoke(main, ["synth", "--n", "2", "--out", str(tmp_path / "c"), "--seed", "4"])
    assert result.exit_code == 0 and "synthesising 2/2 clips, eta 0s" in result.output, result.output  # not a TTY
    result = CliRunner().invoke(main, ["synth", "--n", "3", "--out", str(tmp_path / "c"), "--seed", "5"])
    assert result.exit_code == 1
    assert "holds a different synthetic corpus (n: 2 there, 3 asked; seed: 4 there, 5 asked)" in result.output


def test_synth_rejects_bad_arguments(tmp_path):
    result = CliRunner().invoke(main, ["synth", "--n", "0", "--out", str(tmp_path / "c")])
    assert result.exit_code != 0 and "--n" in result.output


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_model, tmp_path_factory) -> Path:
    model, tok = tiny_model
    return save_checkpoint(model, tok, tmp_path_factory.mktemp("ckpt") / "tiny")


def test_demo_json_reports_truth_prediction_and_mi(tiny_checkpoint, tmp_path):
    result = CliRunner().invoke(
        main, ["demo", "--checkpoint", str(tiny_checkpoint), "--emotion", "sad", "--keep", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["truth"]["label"] == "sad" and report["truth"]["kind"] == "audio_dominant"
    assert Path(report["clip"]).is_file()
    pred = report["prediction"]
    assert pred["face_found"] and pred["present"] == {"visual": True, "audio": True}
    assert pred["label"] in pred["probs"] and abs(sum(pred["probs"].values()) - 1) < 1e-4
    assert abs(sum(pred["importance"].values()) - 1) < 1e-4
    assert pred["dominant"] in ("visual", "audio")


def test_demo_with_the_bundled_model_closes_the_rationale_with_its_label_and_judges_it():
    result = CliRunner().invoke(main, ["demo", "--emotion", "angry", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    label, verdict = report["prediction"]["label"], report["rationale_verdict"]
    assert report["rationale"].endswith(f"<answer>{label}</answer>")
    assert verdict["model_answer"] in report["prediction"]["probs"]
    assert verdict["consistent"] == (verdict["explanation_emotion"] == label)


def test_demo_report_is_readable(tiny_checkpoint):
    result = CliRunner().invoke(main, ["demo", "--checkpoint", str(tiny_checkpoint), "--kind", "conflicting"])
    assert result.exit_code == 0, result.output
    assert "prediction:" in result.output and "dominant modality:" in result.output
    assert "kind conflicting" in result.output


def test_demo_rejects_unknown_emotion(tiny_checkpoint):
    result = CliRunner().invoke(main, ["demo", "--checkpoint", str(tiny_checkpoint), "--emotion", "bored"])
    assert result.exit_code != 0 and "bored" in result.output


def test_export_and_train_refuse_an_out_folder_they_would_wipe_before_any_work(tiny_checkpoint, tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("precious")
    result = CliRunner().invoke(main, ["export", "--checkpoint", str(tiny_checkpoint), "--out", str(user)])
    assert result.exit_code == 1 and "holds files but is not a migr-rt artifact (no manifest.json)" in result.output
    # a checkpoint is not an artifact either: exporting over the folder exported from keeps it
    result = CliRunner().invoke(main, ["export", "--checkpoint", str(tiny_checkpoint), "--out", str(tiny_checkpoint)])
    assert result.exit_code == 1 and "is not a migr-rt artifact" in result.output
    load_checkpoint(tiny_checkpoint)
    # training checks its --out before reading --data (which does not exist here) or training anything
    for recipe in ("base", "migr"):
        result = CliRunner().invoke(main, ["train", "--recipe", recipe, "--data", str(tmp_path / "no-data"),
                                           "--out", str(user)])
        assert result.exit_code == 1, result.output
        assert "holds files but is not a migr-rt checkpoint (no checksums.json)" in result.output
    assert [p.name for p in user.iterdir()] == ["notes.txt"] and (user / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"], "no work, cache or staging folder left"


def test_export_and_train_refuse_an_out_that_cannot_be_created_naming_it(tiny_checkpoint, tmp_path):
    # raw errnos on a staging path (after the whole export) used to be all the user saw
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    commands = [["export", "--checkpoint", str(tiny_checkpoint)], ["train", "--recipe", "base", "--data", "none"],
                ["train", "--recipe", "migr", "--data", "none"]]
    for command in commands:
        result = CliRunner().invoke(main, [*command, "--out", str(blocker / "sub")])
        assert result.exit_code == 1, result.output
        assert f"{blocker / 'sub'}: cannot be created: {blocker} is a file, not a folder" in result.output
        result = CliRunner().invoke(main, [*command, "--out", "/proc/migr-rt-out"])  # no new folders in /proc
        assert result.exit_code == 1, result.output
        assert "/proc/migr-rt-out: the migr-rt " in result.output and "/proc does not take new folders" in result.output
    dangling = tmp_path / "gone"
    dangling.symlink_to(tmp_path / "nowhere")
    result = CliRunner().invoke(main, ["train", "--recipe", "base", "--data", "none", "--out", str(dangling / "b")])
    assert result.exit_code == 1 and f"{dangling} is a link to nothing" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gone", "notes.txt"]

@pytest.mark.parametrize("recipe,option", [("base", "--cache-dir"), ("migr", "--cache-dir"), ("migr", "--work-dir")])
def test_train_refuses_a_cache_or_work_folder_inside_out_before_any_work(tmp_path, recipe, option):
    # the run would fill --out with its cache or work files, and the final save would then refuse (or wipe) them
    out = tmp_path / "ckpt"
    result = CliRunner().invoke(main, ["train", "--recipe", recipe, "--data", str(tmp_path / "no-data"),
                                       "--out", str(out), option, str(out / "inner")])
    assert result.exit_code == 1, result.output
    assert f"{option} {out / 'inner'} is inside the checkpoint folder {out}" in result.output
    assert list(tmp_path.iterdir()) == [], "nothing written"


def test_commands_on_the_torch_model_say_what_a_runtime_only_install_lacks(tmp_path):
    # A runtime-only install (docs/deploy.md, "Without torch") has no torch, transformers or safetensors; the
    # commands that load the torch model said so with an import traceback.
    probe = ("import json, sys\n"
             "sys.modules.update(dict.fromkeys(('torch', 'transformers', 'safetensors')))\n"
             "from click.testing import CliRunner\n"
             "from migr_rt.cli import main\n"
             "out = {}\n"
             f"for args in (['export', '--out', {str(tmp_path / 'x')!r}], ['bench', '--quick'],\n"
             "             ['eval', '--checkpoint', '.', '--data', 'synth'],\n"
             f"             ['train', '--recipe', 'base', '--data', 'synth', '--out', {str(tmp_path / 'y')!r}]):\n"
             "    result = CliRunner().invoke(main, args)\n"
             "    out[args[0]] = [result.exit_code, result.output, repr(result.exception)]\n"
             "print(json.dumps(out))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for command, (code, output, exception) in json.loads(proc.stdout).items():
        assert code == 1 and "Traceback" not in output, (command, output, exception)
        assert f"`migr-rt {command}` works on the torch model and needs torch, transformers, safetensors" in output
        assert "runs the bundled model's ONNX export and exported artifacts: `migr-rt run`" in output, output
    assert not list(tmp_path.iterdir())  # nothing written
