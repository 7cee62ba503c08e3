"""benchmarks/startup.py's reading of ``python -X importtime`` logs."""

from __future__ import annotations

import sys

from benchmark_scripts import load_benchmark

startup = load_benchmark("startup")


def _log_command(lines: list[str]) -> list[str]:
    """A command whose stderr is ``lines`` (an importtime log: a module's imports come before it, indented deeper)."""
    text = "\n".join(["import time: self [us] | cumulative | imported package", *lines]) + "\n"
    return [sys.executable, "-c", f"import sys; sys.stderr.write({text!r})"]


def test_a_package_entered_through_submodules_is_the_sum_of_its_outermost_modules():
    # As in a run that reaches torch through transformers' lazy imports: no line for `torch` itself, two
    # separate torch subtrees, one of them holding a torch module imported through numpy (counted once).
    log = [
        "import time:       100 |        100 |       torch._C",
        "import time:       200 |        300 |     torch._utils",
        "import time:        50 |         50 |         torch._np_helper",
        "import time:       400 |        450 |       numpy",
        "import time:       500 |        950 |     torch._meta",
        "import time:      1000 |       2250 |   transformers.configuration_utils",
        "import time:      3000 |       5250 | migr_rt.model.config",
    ]
    seconds = startup.import_seconds(_log_command(log))
    assert abs(seconds["torch"] - (300 + 950) / 1e6) < 1e-12
    assert abs(seconds["transformers"] - 2250 / 1e6) < 1e-12
    assert abs(seconds["all"] - 5250 / 1e6) < 1e-12
    assert seconds["onnxruntime"] == 0.0


def test_a_package_with_its_own_line_is_that_line():
    log = [
        "import time:       100 |        100 |     torch._C",
        "import time:       900 |       1000 |   torch",
        "import time:        10 |         10 |     torch._dynamo",
        "import time:        20 |         30 |   transformers.modeling_utils",
        "import time:         5 |       1035 | migr_rt.model.modeling",
    ]
    seconds = startup.import_seconds(_log_command(log))
    assert abs(seconds["torch"] - (1000 + 10) / 1e6) < 1e-12  # the later torch._dynamo, under transformers
    assert abs(seconds["transformers"] - 30 / 1e6) < 1e-12
