"""The example of the swap in a Lightning Pose training step runs and learns."""

import re
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="the example trains a PyTorch model (scripts/test.sh installs torch)")


def test_the_lightning_pose_training_step_example_learns(root):
    out = subprocess.run(
        [sys.executable, str(root / "examples" / "python" / "lightning_pose_step.py"), "--steps", "41", "--backend", "gpu"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    totals = [float(t) for t in re.findall(r"total ([0-9.e+-]+)", out.stdout)]
    assert len(totals) == 3, out.stdout  # steps 0, 20, 40
    assert totals[-1] < 0.2 * totals[0], out.stdout
    assert "train_temporal_loss" in out.stdout
    assert "ran on gpu" in out.stdout
