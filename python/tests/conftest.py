"""Shared fixtures: the repository's paths and the Lightning Pose example program."""

import pathlib

import pytest

import lossc

ROOT = pathlib.Path(__file__).resolve().parents[2]
LIGHTNING_POSE = sorted((ROOT / "examples" / "lightning_pose").glob("*.loss"))


@pytest.fixture(scope="session")
def root():
    return ROOT


@pytest.fixture(scope="session")
def lp_paths():
    assert len(LIGHTNING_POSE) == 12, LIGHTNING_POSE
    return [str(p) for p in LIGHTNING_POSE]


@pytest.fixture(scope="session")
def lp_program(lp_paths):
    return lossc.load(lp_paths)

