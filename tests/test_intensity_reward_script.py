"""benchmarks/intensity_reward.py: which rows a command line asks for, how they are named, and the seed summary."""

from __future__ import annotations

import pytest
from benchmark_scripts import load_benchmark
from click.testing import CliRunner


@pytest.fixture(scope="module")
def script():
    return load_benchmark("intensity_reward")


def test_rows_are_named_by_what_they_change(script):
    assert script.row_name("migr+set", 0.5, {"consistency": 0.0}) == "migr[consistency=0]"
    assert script.row_name("migr+set", 0.5, None, 0.2) == "migr[beta=0.2]"
    assert script.row_name("migr+set", 0.5, {"grounding": 0.0, "consistency": 0.0}, 1.0) == \
        "migr[beta=1,consistency=0,grounding=0]"
    assert script.row_name("migr+intensity", 2.0, {"consistency": 0.0}, 0.2) == "migr+intensity@2"
    assert script.row_name("migr", 0.5, None, 0.2) == "migr"


def test_the_default_beta_is_the_recipes(script):
    from migr_rt.training.reasoning_recipe import ReasoningRecipeConfig

    assert script.DEFAULT_BETA == ReasoningRecipeConfig(recipe="migr", data="d", out="o").grpo.beta > 0


@pytest.mark.parametrize("args, message", [
    (["--only", "migr", "--beta", "0.2"], "--set or --beta and the migr+set row go together"),
    (["--only", "migr+set"], "--set or --beta and the migr+set row go together"),
    (["--only", "migr+set", "--beta", "0.02"], "that is the migr row"),
    (["--only", "migr+set", "--set", "consistency=1"], "that is the migr row"),
    (["--only", "migr+set", "--beta", "-1"], "-1"),
])
def test_a_migr_set_row_must_change_something(script, tmp_path, args, message):
    result = CliRunner().invoke(script.main, [*args, "--train", str(tmp_path / "none"), "--base", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.parametrize("args", [
    ["--only", "migr+set", "--beta", "0.2"],
    ["--only", "migr+set", "--beta", "0"],
    ["--only", "migr+set", "--beta", "0.02", "--set", "consistency=0"],
])
def test_a_row_that_changes_something_gets_as_far_as_the_data(script, tmp_path, args):
    result = CliRunner().invoke(script.main, [*args, "--train", str(tmp_path / "none"), "--base", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "no training corpus" in result.output


def _seed(script, seed: int, values: dict[str, float]) -> dict:
    rows = {name: {"metrics": {key: v + 0.01 * seed for key, _ in script.COMPARED}} for name, v in values.items()}
    return {"seed": seed, "variants": rows, "machine": {"commit": f"c{seed}"}}


def test_the_summary_gives_every_changed_row_its_difference_to_migr(script):
    results = {s: _seed(script, s, {"migr": 0.5, "migr+intensity@0.5": 0.6, "migr[beta=0.2]": 0.25,
                                    "migr, SFT only": 0.7}) for s in (0, 1)}
    results[1]["variants"]["migr[beta=1]"] = results[1]["variants"]["migr"]  # one seed only: not summarised
    out = script.summary(results)
    assert out["rows"] == ["migr, SFT only", "migr", "migr+intensity@0.5", "migr[beta=0.2]"]
    agreement = out["metrics"]["intensity_agreement"]
    assert set(agreement["minus_migr"]) == {"migr+intensity@0.5", "migr[beta=0.2]"}
    assert agreement["minus_migr"]["migr[beta=0.2]"] == pytest.approx([-0.25, -0.25])
    assert agreement["mean"]["migr"] == pytest.approx(0.505)
    assert "| intensity agreement | migr[beta=0.2] - migr | -0.250 | -0.250 | -0.250 |" in script.render_summary(results)
