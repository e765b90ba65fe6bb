"""Settings shared by several recipes, as small groups of flags a recipe's own settings class extends.

A recipe's settings class is a frozen dataclass whose field names are the flags it uses (see
:func:`ml4ge.arguments.flag_settings`); code written against the old argument namespace (``args.batch_size``)
reads a settings object the same way. Adding a flag: define it once in :data:`ml4ge.arguments.FLAGS` (in the
table of its area, an ``ml4ge/arguments/*_flags.py`` module), then name it as a field of the settings class (or
group) of each recipe that uses it.
"""

from __future__ import annotations

from pathlib import Path

from ml4ge.arguments import Settings, flag_names, flag_settings, out_of_bounds

EXISTING_FILES = ("model_file", "sample_csv", "train_csv", "valid_csv", "test_csv", "manifest", "phenotype_csv",
                  "phenotypes", "target_csv", "background_csv")


@flag_settings
class RunSettings(Settings):
    """Flags of every mode: where the run lives, its seed and its worker processes."""

    output_folder: str
    id: str
    random_seed: int
    num_workers: int
    overwrite: bool


@flag_settings
class SplitSettings(Settings):
    """Which samples a training run uses and how they are split into train, valid and test."""

    sample_csv: str | None
    train_csv: str | None
    valid_csv: str | None
    test_csv: str | None
    valid_ratio: float
    test_ratio: float


@flag_settings
class ModelSettings(Settings):
    """The architecture flags (``ModelConfig.from_args`` reads them), and a trained model to start from."""

    family: str
    encoder_blocks: tuple[str, ...]
    merge_blocks: tuple[str, ...]
    decoder_blocks: tuple[str, ...]
    model_preset: str | None
    model_file: str | None
    activation: str
    conv_layers: tuple[int, ...]
    conv_width: tuple[int, ...]
    conv_x: tuple[int, ...]
    conv_y: tuple[int, ...]
    conv_z: tuple[int, ...]
    conv_normalize: str | None
    conv_regularize: str | None
    conv_regularize_rate: float
    dense_blocks: tuple[int, ...]
    block_size: int
    dense_layers: tuple[int, ...]
    dense_normalize: str | None
    dense_regularize: str | None
    dense_regularize_rate: float
    pool_type: str
    conv_style: str
    decoder_template: bool
    pool_x: int
    pool_y: int
    pool_z: int
    vit_patch: tuple[int, ...]
    vit_width: int
    vit_depth: int
    vit_heads: int
    vit_mlp_ratio: int
    vit_decoder_width: int
    vit_decoder_depth: int
    vit_decoder_heads: int
    sfcn_channels: tuple[int, ...]
    sfcn_dropout: float
    soft_label_range: tuple[float, ...]
    soft_label_width: float
    soft_label_sigma: float
    pairs: tuple[tuple[str, str], ...]
    pair_loss: str
    pair_loss_weight: float
    pair_merge: str
    alpha: float | None
    beta: float
    beta_schedule: str
    beta_warmup_epochs: int
    beta_cycles: int
    beta_ratio: float
    beta_cycle_epochs: int
    beta_explode_epochs: int
    gamma: float
    salient_size: int
    background_size: int


@flag_settings
class FitSettings(Settings):
    """How a model is fitted: batches, epochs, steps, early stopping, optimizer and learning-rate schedule,
    distribution, precision (:func:`ml4ge.training_settings.training_settings_from_args` reads them)."""

    batch_size: int
    epochs: int
    training_steps: int
    validation_steps: int
    test_steps: int
    patience: int
    learning_rate: float
    optimizer: str
    lr_schedule: str
    lr_factor: float
    lr_patience: int | None
    lr_min: float
    lr_step_epochs: int
    lr_warmup_epochs: int
    precise_bn: int | None
    strategy: str
    mixed_precision: bool
    recompute_encoders: bool
    inspect_model: bool
    patience_style: str


def check_common(settings) -> None:
    """Checks of flags that several modes share, for the flags ``settings`` has: each number within its flag's
    bounds, split ratios, existing files.

    Raises:
        ValueError, FileNotFoundError: with a message saying what to change.
    """
    violations = out_of_bounds(settings)
    if violations:
        raise ValueError(" ".join(violations))
    names = set(flag_names(settings))
    if "valid_ratio" in names:
        valid, test = settings.valid_ratio, settings.test_ratio
        if not 0 <= valid < 1 or not 0 <= test < 1 or valid + test >= 1:
            raise ValueError(f"--valid_ratio {valid} and --test_ratio {test} must be in [0, 1) and leave some "
                             "samples for training.")
    for name in EXISTING_FILES:
        value = getattr(settings, name) if name in names else None
        if value and not Path(value).is_file():
            raise FileNotFoundError(f"--{name} {value!r} does not exist.")
    if "model_file" in names and settings.model_file:
        from ml4ge.models.layout import check_model_format  # h5py, scipy.ndimage: only modes that load a model

        check_model_format(settings.model_file)


@flag_settings
class PredictorSettings(Settings):
    """The ``predictor`` family's flags (:class:`ml4ge.models.predictor_config.PredictorConfig`)."""

    predictor_stages: tuple[int, ...]
    predictor_width: int
    predictor_l2: float
    presence_inputs: bool
    balance: str
