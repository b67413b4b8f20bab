"""pik/runtime.py: the collector settings every `pik` process and the Lambda tap run with."""

from __future__ import annotations

import subprocess
import sys

from pik.runtime import GEN0_THRESHOLD


def test_tune_collector_freezes_start_up_and_raises_the_youngest_threshold() -> None:
    code = (
        "import gc; before = gc.get_threshold()\n"
        "from pik.runtime import tune_collector; tune_collector(); tune_collector()\n"
        "print(before, gc.get_threshold(), gc.get_freeze_count() > 0, gc.isenabled())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split(") ")
    assert out[0] == "(700, 10, 10"  # CPython 3.11's own
    assert out[1] == f"({GEN0_THRESHOLD}, 10, 10"
    assert out[2].split() == ["True", "True"]


def test_the_cli_and_the_lambda_tap_apply_it() -> None:
    code = (
        "import gc, sys; sys.argv = ['pik', '--help']\n"
        "from pik import cli\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "print(gc.get_threshold()[0], file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stderr.strip().splitlines()[-1] == str(GEN0_THRESHOLD)
    code = "import gc\nimport pik.lambdas.tap\nprint(gc.get_threshold()[0])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(GEN0_THRESHOLD)
