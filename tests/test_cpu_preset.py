"""``--model_preset cpu_brain``: the settings the demo found to work for brain volumes on a CPU, named for the README's
train command (the bare flag defaults are generic); flags given explicitly still win."""

from __future__ import annotations

from ml4ge.arguments import build_parser
from ml4ge.demo.presets import PRESETS as DEMO_PRESETS
from ml4ge.models.config import ModelConfig
from ml4ge.models.presets import settings_from_args
from ml4ge.schedules import PlateauSchedule
from ml4ge.training_settings import training_settings_from_args


def parse(*flags: str):
    return build_parser().parse_args(["--mode", "train", *flags])


def demo_arguments():
    """The parsed flags of the default demo's models (the demo sets them directly: its empty stem has no flag)."""
    arguments = parse()
    preset = DEMO_PRESETS.get("default")
    for name, value in {**preset.model_flags, "batch_size": preset.batch_size}.items():
        setattr(arguments, name, value)
    return arguments


def test_cpu_brain_is_the_default_demos_model_and_training():
    model, training = settings_from_args(parse("--model_preset", "cpu_brain"))
    demo = demo_arguments()
    assert model.with_changes(preset=None) == ModelConfig.from_args(demo).with_changes(pair=model.pair)
    assert training == training_settings_from_args(demo)
    assert (training.learning_rate, training.batch_size, training.patience, training.schedule) == (
        1e-3, 2, 4, PlateauSchedule(factor=0.5, patience=2))
    assert model.conv.template and model.conv.pool_type == "average" and model.latent_size == 128


def test_flags_given_win_over_cpu_brain():
    _, training = settings_from_args(parse("--model_preset", "cpu_brain", "--batch_size", "4", "--epochs", "3",
                                           "--learning_rate", "0.0005"))
    assert (training.batch_size, training.epochs, training.learning_rate) == (4, 3, 5e-4)


def test_udip_still_takes_batch_size_and_epochs_from_the_flags():
    _, training = settings_from_args(parse("--model_preset", "udip"))
    assert (training.batch_size, training.epochs, training.patience) == (8, 10, 8)
