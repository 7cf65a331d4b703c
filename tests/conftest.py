"""Shared fixtures: a run directory trained briefly on the embedded sample, and real-data discovery."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def real_data_dir() -> Path | None:
    """../shared/data (or $EDGEBLOOD_DATA) when it holds the official 28 px file."""
    for candidate in (os.environ.get("EDGEBLOOD_DATA"), SHARED_DATA):
        if candidate and (Path(candidate) / "bloodmnist.npz").is_file():
            return Path(candidate)
    return None


def pytest_collection_modifyitems(config, items):
    if real_data_dir() is None:
        skip = pytest.mark.skip(reason="real BloodMNIST data not found (../shared/data or $EDGEBLOOD_DATA)")
        for item in items:
            if "realdata" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = real_data_dir()
    if found is None:
        pytest.skip("real BloodMNIST data not found")
    return found


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory) -> Path:
    """se-cnn trained for a few epochs on the embedded sample (28 px): a complete, evaluated run directory.

    Read-only for tests: copy it (``copy_run``) before changing anything inside.
    """
    from edgeblood.training import TrainConfig, train

    out = tmp_path_factory.mktemp("runs")
    cfg = TrainConfig(model="se-cnn", size=28, sample=True, epochs=6, batch_size=64, lr=3e-3, out_dir=str(out),
                      name="sample-se-cnn", seed=0, model_cfg={"widths": [16, 32, 64, 128]})
    return train(cfg, console=_quiet_console(), evaluate=True)


@pytest.fixture
def copy_run(tmp_path):
    """Returns a function that copies a run directory into this test's tmp_path (so tests can modify it)."""
    import shutil

    def _copy(run_dir: Path) -> Path:
        dest = tmp_path / Path(run_dir).name
        shutil.copytree(run_dir, dest)
        return dest

    return _copy


def _quiet_console():
    from rich.console import Console

    return Console(quiet=True)
