"""The long fuzzing run: every fuzz test again under HYPOTHESIS_PROFILE=long (tens of times the
examples of the fast profile that `make test` runs), in its own pytest process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_the_fuzz_tests_hold_under_the_long_profile() -> None:
    tests = Path(__file__).parent
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-m",
            "fuzz",
            "-p",
            "no:cacheprovider",
            "--hypothesis-show-statistics",
            str(tests),
        ],
        env=os.environ | {"HYPOTHESIS_PROFILE": "long"},
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=tests.parent,
    )
    assert proc.returncode == 0, proc.stdout[-20000:] + proc.stderr[-5000:]
