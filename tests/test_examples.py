"""The example scripts run as documented, on real CIFAR-10 images."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("script, expected", [
    ("callback_existing_project.py", "`Trainer.fit` stopped"),
    ("plain_pytorch_loop.py", "val accuracy"),
])
def test_example_script_runs(script, expected, cifar10_root, tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--root", str(cifar10_root), "--train-size", "200"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert expected in result.stdout + result.stderr
