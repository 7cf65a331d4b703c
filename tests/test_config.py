"""edgeblood.config: the declarative half of training (TrainConfig, AugmentConfig, recipes) loads no torch.

Each check runs in a fresh interpreter, because this test process has torch loaded already: a module
that pulled torch in (directly or through edgeblood.training / edgeblood.data.augment) would show up
in the child's ``sys.modules``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgeblood.config import AugmentConfig, TrainConfig, config_from_recipe, parse_stages
from edgeblood.errors import ConfigError


def _loaded_after(code: str) -> list[str]:
    """Heavy modules a fresh interpreter holds after running ``code``."""
    probe = code + "\nimport sys; print(','.join(m for m in ('torch', 'numpy', 'edgeblood.training', 'edgeblood.data.augment') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return [m for m in out.stdout.strip().splitlines()[-1].split(",") if m] if out.stdout.strip() else []


def test_the_config_package_imports_without_torch():
    code = ("from edgeblood.config import config_from_recipe, TrainConfig, AugmentConfig, RECIPES, get_recipe\n"
            "cfg = config_from_recipe('se-cnn', 64, 'best', epochs=3); cfg.validate()\n"
            "assert TrainConfig.from_dict(cfg.to_dict()) == cfg")
    assert _loaded_after(code) == []


def test_edgeblood_config_from_recipe_is_torch_free():
    code = "import edgeblood\ncfg = edgeblood.config_from_recipe('se-cnn', 28, epochs=2)\nassert isinstance(cfg, edgeblood.TrainConfig)"
    assert "torch" not in _loaded_after(code)


def test_train_help_is_torch_free():
    code = ("import sys\nfrom edgeblood.cli import app\n"
            "try:\n    app(['train', '--help'], prog_name='edgeblood')\nexcept SystemExit as e:\n    assert e.code == 0, e.code")
    assert "torch" not in _loaded_after(code)


def test_configs_round_trip_through_run_json_form():
    cfg = config_from_recipe("se-cnn", 28, epochs=4, augment={"zoom": (0.8, 1.25)}, progressive=None)
    again = TrainConfig.from_dict({**cfg.to_dict(), "a_field_from_a_newer_version": 1})
    assert again == cfg and isinstance(again.augment, AugmentConfig) and again.augment.zoom == (0.8, 1.25)


@pytest.mark.parametrize("bad, match", [
    (dict(epochs=0), "--epochs"),
    (dict(optimizer="lion"), "--optimizer"),
    (dict(progressive=[[16, 5]], size=28, epochs=5), "--progressive-resize"),
    (dict(augment=AugmentConfig(blur=0.5)), "--blur"),
])
def test_bad_values_are_config_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**bad).validate()
    with pytest.raises(ConfigError, match="SIZE:EPOCHS"):
        parse_stages("32-40")


def test_the_finetune_recipe_gives_a_few_labelled_images_hundreds_of_steps():
    """10 images per class (40-80 in all): batches of 16 for 200 epochs is ~600 optimizer steps where the default
    recipe's batch of 128 gives one step per epoch; the peak rate is the default's scaled for trained weights."""
    from edgeblood.config.recipes import FINETUNE_LR_FACTOR

    default = config_from_recipe("se-cnn", 28, "default", init="runs/parent")
    tuned = config_from_recipe("se-cnn", 28, "finetune", init="runs/parent")
    assert (tuned.batch_size, tuned.epochs, tuned.keep) == (16, 200, "last") and default.batch_size == 128
    assert tuned.lr == pytest.approx(3e-3 * FINETUNE_LR_FACTOR) == pytest.approx(default.lr)
    assert tuned.augment == default.augment  # the same other-lab augmentation as the parent's training
    assert config_from_recipe("se-cnn", 28, "finetune", init="runs/parent", epochs=50).epochs == 50  # options still win
