"""Shared fixtures: a run directory trained briefly on the embedded sample, and real-data discovery."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def real_data_dir() -> Path | None:
    """../shared/data (or $EDGEBLOOD_DATA) when it holds the official 28 px file."""
    return real_data_path("bloodmnist.npz", parent=True)


def real_data_path(*parts: str, parent: bool = False) -> Path | None:
    """``<data>/<parts>`` in the first data folder that has it: $EDGEBLOOD_DATA, then ../shared/data.

    The one resolver for every data path in the tests (issue #30: a path written out in a test file
    skipped wherever the data lies elsewhere). ``parent=True`` returns the data folder itself.
    """
    for candidate in (os.environ.get("EDGEBLOOD_DATA"), SHARED_DATA):
        if candidate and (Path(candidate).joinpath(*parts)).exists():
            return Path(candidate) if parent else Path(candidate).joinpath(*parts)
    return None


def pbc_originals_dir(split: str = "val") -> Path | None:
    """The PBC originals (whole 360x363 captures, class folders) of ``split``; None where they are not here."""
    return real_data_path("pbc-originals", split)


def external_data_dir(name: str) -> Path | None:
    """An external labelled image set under ``<data>/external/<name>`` (e.g. jtsc); None where it is not here."""
    return real_data_path("external", name)


def script_module(name: str):
    """scripts/NAME.py loaded as a module (the scripts folder is not a package), for tests of its functions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
def originals_dir() -> Path:
    """The PBC val originals (pbc_originals_dir); the test is skipped where they are not here."""
    found = pbc_originals_dir("val")
    if found is None:
        pytest.skip("pbc-originals/val not found under $EDGEBLOOD_DATA or ../shared/data")
    return found


#: What ``--precision auto`` resolves to inside the test process. The CPU decides it for users (bf16 where
#: AMX/AVX512-BF16 is native); the suite pins it, so a test's outcome does not depend on the machine CI
#: happens to get (issue #29). ``EDGEBLOOD_TEST_PRECISION=bf16 pytest`` runs the whole suite on the bf16
#: path instead; tests parametrized over ``PRECISIONS`` exercise both paths on every run.
TEST_PRECISION = os.environ.get("EDGEBLOOD_TEST_PRECISION", "fp32")
PRECISIONS = ("fp32", "bf16")


def pytest_report_header(config) -> list[str]:
    """The CPU and its ISA, at the top of every test log: a failure says which machine it saw."""
    from edgeblood.bench.machine import cpu_info

    cpu = cpu_info()
    return [f"cpu: {cpu.get('model')}, {cpu.get('logical_cores')} logical cores, ISA: {' '.join(cpu.get('isa', []))}",
            f"--precision auto resolves to {TEST_PRECISION} in tests (EDGEBLOOD_TEST_PRECISION)"]


@pytest.fixture(autouse=True, scope="session")
def _pinned_auto_precision():
    if TEST_PRECISION not in PRECISIONS:
        raise pytest.UsageError(f"EDGEBLOOD_TEST_PRECISION must be one of {', '.join(PRECISIONS)}, got {TEST_PRECISION}")
    mp = pytest.MonkeyPatch()
    mp.setattr("edgeblood.training.distributed._cpu_has_native_bf16", lambda: TEST_PRECISION == "bf16")
    yield
    mp.undo()


@pytest.fixture(scope="session")
def sample_runs(tmp_path_factory):
    """``sample_runs(precision)``: se-cnn trained for a few epochs on the embedded sample (28 px) with that
    training precision, a complete evaluated run directory, trained once per session and precision.

    Read-only for tests: copy it (``copy_run``) before changing anything inside.
    """
    from edgeblood.config import TrainConfig
    from edgeblood.training import train

    made: dict[str, Path] = {}

    def _run(precision: str) -> Path:
        if precision not in made:
            out = tmp_path_factory.mktemp(f"runs-{precision}")
            cfg = TrainConfig(model="se-cnn", size=28, sample=True, epochs=6, batch_size=64, lr=3e-3, out_dir=str(out),
                              name="sample-se-cnn", seed=0, model_cfg={"widths": [16, 32, 64, 128]}, precision=precision)
            made[precision] = train(cfg, evaluate=True)
        return made[precision]

    return _run


@pytest.fixture(scope="session")
def sample_run(sample_runs) -> Path:
    """The sample run at the suite's precision (TEST_PRECISION). Read-only: copy it before changing it."""
    return sample_runs(TEST_PRECISION)


@pytest.fixture
def copy_run(tmp_path):
    """Returns a function that copies a run directory into this test's tmp_path (so tests can modify it)."""
    import shutil

    def _copy(run_dir: Path) -> Path:
        dest = tmp_path / Path(run_dir).name
        shutil.copytree(run_dir, dest)
        return dest

    return _copy

