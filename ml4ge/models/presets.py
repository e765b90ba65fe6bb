"""Named architectures (``--model_preset``): a block configuration and its training settings, as data.

``udip``: the UDIP 3-D convolutional autoencoder (Patel et al., ZhiGroup/DeepENDO; REFERENCE_SEEDS.md section A).
A 182x218x182 input is zero-padded centrally to 192x224x192 (the encoder pads to a multiple of 16), two 3x3x3
convolutions with 16 channels, four stages of 2x max-pooling then two convolutions (32, 64, 128, 256), BatchNorm
(momentum 0.9, eps 1e-5: PyTorch's defaults) and LeakyReLU(0.01) after every convolution, flatten, a linear dense
latent of 128 (the "ENDO"s), a linear dense back to 12x14x12x256, a mirrored decoder whose stages end in stride-2
transposed convolutions without norm or activation, two 16-channel convolutions, a linear 1x1x1 convolution, and
a central crop back to 182x218x182. About 138 M parameters at full size, 132.6 M of them in the two dense
layers. The same architecture serves smaller inputs (64^3, 96^3) for CPU work. It trains with Adam at the
learning rate of its modality and ReduceLROnPlateau(0.5, 4, min_lr = rate / 1000).

Use it with ``--model_preset udip --encoder_blocks conv_encode --decoder_blocks conv_decode`` and a masked
volume map (its default loss is the masked MSE), or ``udip_preset("t1")`` from Python.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

from ml4ge.models.config import ConvConfig, DenseConfig, ModelConfig, pair_from_args, soft_label_from_args
from ml4ge.models.sfcn_config import SFCNConfig, SoftLabelConfig
from ml4ge.models.vit_config import ViTConfig
from ml4ge.registry import Registry
from ml4ge.schedules import ConstantSchedule, PlateauSchedule, StepSchedule
from ml4ge.training_settings import SCHEDULE_FLAGS, TrainingSettings, explicit_flags, schedule_from_args

# Adam learning rates of the published UDIP runs (learning-rate-finder values).
UDIP_LEARNING_RATES = {"t1": 0.0005248074602497723, "t2": 0.0003019951720402019}
# Batch sizes of the published runs (T1 over 4 GPUs with synchronised BatchNorm; T2 as committed).
UDIP_BATCH_SIZES = {"t1": 36, "t2": 1}
UDIP_EPOCHS = 100

PRESETS: Registry = Registry("model preset")


@dataclass(frozen=True)
class Preset:
    """A named architecture and the training settings it was published with.

    ``schedule(learning_rate)`` gives the preset's schedule for a learning rate (UDIP's floor is rate / 1000), so
    an explicit ``--learning_rate`` moves the floor with it. ``own_run_settings``: the preset's epochs, batch size
    and patience apply unless the flags give others (a preset meant for the machine at hand, like ``cpu_brain``);
    otherwise the flags' always do.
    """

    model: ModelConfig
    training: TrainingSettings
    own_run_settings: bool = False

    def schedule(self, learning_rate: float):
        schedule = self.training.schedule
        floor = getattr(schedule, "min_lr", None)
        if floor is None or self.training.learning_rate <= 0:
            return schedule
        return replace(schedule, min_lr=floor * learning_rate / self.training.learning_rate)


@PRESETS.register("udip")
def udip_preset(modality: str = "t1", latent_size: int = 128) -> Preset:
    """The UDIP autoencoder with the learning rate of ``modality`` and ReduceLROnPlateau(0.5, 4, lr / 1000).

    Args:
        modality: ``t1`` or ``t2`` (chooses the learning rate).
        latent_size: width of the linear latent (UDIP: 128).

    Raises:
        ValueError: for another modality.

    Example:
        >>> udip_preset("t2").training.learning_rate
        0.0003019951720402019
    """
    if modality not in UDIP_LEARNING_RATES:
        raise ValueError(f"UDIP was trained on {sorted(UDIP_LEARNING_RATES)}, got modality {modality!r}.")
    conv = ConvConfig(
        layers=(16, 16), stages=(32, 64, 128, 256), block_size=2,
        kernel_1d=(3,), kernel_x=(3,), kernel_y=(3,), kernel_z=(3,),
        pool=(2, 2, 2), pool_type="max",
        activation="leaky_relu", normalize="batch_norm", upsample="transpose", style="plain",
    )
    dense = DenseConfig(widths=(latent_size,), activation="leaky_relu")
    learning_rate = UDIP_LEARNING_RATES[modality]
    training = TrainingSettings(
        optimizer="adam", learning_rate=learning_rate,
        schedule=PlateauSchedule(factor=0.5, patience=4, min_lr=learning_rate / 1000),
        epochs=UDIP_EPOCHS, batch_size=UDIP_BATCH_SIZES[modality],
    )
    return Preset(ModelConfig(conv=conv, dense=dense, preset="udip"), training)


def udip_config(modality: str = "t1", latent_size: int = 128) -> ModelConfig:
    """The UDIP architecture alone (see :func:`udip_preset`)."""
    return udip_preset(modality, latent_size).model


def preset_modality(input_names) -> str:
    """``t2`` when every input name contains ``t2``, else ``t1``."""
    names = [str(n).lower() for n in input_names or ()]
    return "t2" if names and all("t2" in n for n in names) else "t1"


def preset_from_args(args: argparse.Namespace) -> tuple[ModelConfig, TrainingSettings]:
    """The architecture and training settings of ``--model_preset``, with the flags given explicitly applied.

    The preset's learning rate follows the modality of the inputs (T2 when every input name contains ``t2``). The
    pair flags always apply; ``--learning_rate``, ``--optimizer`` and the ``--lr_*`` schedule flags win when they
    differ from their defaults; epochs, batch size and patience always come from the flags (a CPU run of UDIP's
    100 epochs at batch 36 is rarely what a command line means).

    Raises:
        UnknownNameError: for an unknown preset, with the closest names.
    """
    preset = PRESETS.get(args.model_preset)(preset_modality(getattr(args, "input_tensors", ())))
    given = explicit_flags(args)
    learning_rate = float(args.learning_rate) if "learning_rate" in given else preset.training.learning_rate
    schedule = schedule_from_args(args) if given & SCHEDULE_FLAGS else preset.schedule(learning_rate)
    training = replace(
        preset.training, learning_rate=learning_rate, schedule=schedule,
        optimizer=args.optimizer if "optimizer" in given else preset.training.optimizer,
        weight_decay=None if "optimizer" in given else preset.training.weight_decay,  # the preset's optimizer's
        **run_settings(args, preset),
    )
    model = preset.model.with_changes(pair=pair_from_args(args))
    bins = soft_label_from_args(args, model.soft_label)  # --soft_label_* given: the bins follow the cohort's ages
    if bins != model.soft_label:
        model = model.with_changes(soft_label=bins)
    return model, training


RUN_FLAGS = ("patience", "epochs", "batch_size")


def run_settings(args: argparse.Namespace, preset: Preset) -> dict[str, int]:
    """Epochs, batch size and patience: the flags', or for a preset with ``own_run_settings`` its own where the
    flag keeps its default value."""
    defaults, own = TrainingSettings(), preset.training
    return {name: int(getattr(args, name)) if not preset.own_run_settings or
            int(getattr(args, name)) != getattr(defaults, name) else getattr(own, name) for name in RUN_FLAGS}


def settings_from_args(args: argparse.Namespace) -> tuple[ModelConfig, TrainingSettings]:
    """``(architecture, training settings)`` of a command line, through its preset when it names one."""
    from ml4ge.training_settings import training_settings_from_args

    if getattr(args, "model_preset", None):
        model, training = preset_from_args(args)
    else:
        model, training = ModelConfig.from_args(args), training_settings_from_args(args)
    return model, training.with_changes(precise_bn=getattr(args, "precise_bn", None),
                                        recompute_encoders=bool(getattr(args, "recompute_encoders", False)))


# UDIP-ViT (REFERENCE_SEEDS.md section B): AdamW 1e-3 (PyTorch weight decay 0.01), x0.5 every 3 epochs, floor 1e-5.
UDIP_VIT_LEARNING_RATE = 1e-3
UDIP_VIT_BATCH_SIZE = 2
UDIP_VIT_WEIGHT_DECAY = 0.01  # PyTorch's AdamW default (Keras' is 0.004)
UDIP_VIT_EPOCHS = 300


def _vit_training(epochs: int, batch_size: int) -> TrainingSettings:
    return TrainingSettings(
        optimizer="adamw", learning_rate=UDIP_VIT_LEARNING_RATE,
        schedule=StepSchedule(factor=0.5, every=3, min_lr=1e-5), epochs=epochs, batch_size=batch_size,
        weight_decay=UDIP_VIT_WEIGHT_DECAY,
    )


@PRESETS.register("udip_vit")
def udip_vit_preset(modality: str = "t1") -> Preset:
    """UDIP-ViT: the vision-transformer autoencoder of T1 (Islam et al.; REFERENCE_SEEDS.md section B).

    A 182x218x182 volume is padded centrally to 182x224x182, cut into 13x14x13 = 2,366 patches of 14x16x14 voxels
    (embedded by a convolution), of which the brain patches are kept; width 128, 12 pre-LN blocks with 8 heads,
    latent = mean of the kept tokens (128); decoder width 64, 12 blocks with 8 heads, a linear map to 3,136 voxels
    per patch. 3,593,088 trainable parameters at full size. AdamW at 1e-3, x0.5 every 3 epochs with floor 1e-5,
    batch 2. Use it with ``--encoder_blocks vit_encode --decoder_blocks vit_decode`` (and the loss
    ``patch_masked_mse`` for the seed's loss). ``modality`` is accepted for the preset interface (T1 only).
    """
    model = ModelConfig(vit=ViTConfig(), dense=DenseConfig(widths=(ViTConfig().width,)), preset="udip_vit")
    return Preset(model, _vit_training(UDIP_VIT_EPOCHS, UDIP_VIT_BATCH_SIZE))


@PRESETS.register("udip_vit_small")
def udip_vit_small_preset(modality: str = "t1") -> Preset:
    """UDIP-ViT reduced for the demo's 3 mm volumes (64x80x64) on a CPU: 8x8x8 patches (8x10x8 = 640 tokens),
    width 64, 4 blocks with 4 heads, decoder width 32 with 2 blocks and 4 heads; the seed's optimizer and
    schedule, batch 4."""
    vit = ViTConfig(patch=(8, 8, 8), width=64, depth=4, heads=4, decoder_width=32, decoder_depth=2, decoder_heads=4)
    model = ModelConfig(vit=vit, dense=DenseConfig(widths=(vit.width,)), preset="udip_vit_small")
    return Preset(model, _vit_training(30, 4))


# cpu_brain: the small autoencoder the demo trains on brain volumes on a 2-core CPU (ml4ge/demo/presets.py, preset
# default; docs/experiments.md): no stem, three stages of one 3^3 convolution (16, 32, 64) with average pooling,
# swish, a decoder template started at the training mean, 128 latents; Adam at 1e-3 (1e-4 barely moved in 10
# epochs), batches of 2 (on a CPU an epoch costs about the same whatever the batch, so small batches buy more
# updates), patience 4 with the plateau schedule at half of it.
CPU_BRAIN_LEARNING_RATE = 1e-3


@PRESETS.register("cpu_brain")
def cpu_brain_preset(modality: str = "t1", latent_size: int = 128) -> Preset:
    """The demo's CPU autoencoder of brain volumes (any modality; ``modality`` is accepted for the registry)."""
    conv = ConvConfig(layers=(), stages=(16, 32, 64), block_size=1, kernel_x=(3,), kernel_y=(3,), kernel_z=(3,),
                      pool=(2, 2, 2), pool_type="average", activation="swish", template=True, style="plain")
    dense = DenseConfig(widths=(latent_size,), activation="swish")
    training = TrainingSettings(optimizer="adam", learning_rate=CPU_BRAIN_LEARNING_RATE,
                                schedule=PlateauSchedule(factor=0.5, patience=2), patience=4, epochs=10, batch_size=2)
    return Preset(ModelConfig(conv=conv, dense=dense, preset="cpu_brain"), training, own_run_settings=True)
# SFCN brain age (REFERENCE_SEEDS.md section C.1): the seed fine-tuned with Adam at 3e-4, batch 20, stopping after
# 3 epochs without a lower validation loss (about 9 epochs were logged), with no schedule.
SFCN_LEARNING_RATE = 3e-4
SFCN_BATCH_SIZE = 20
SFCN_PATIENCE = 3


def _sfcn_training(epochs: int, batch_size: int) -> TrainingSettings:
    return TrainingSettings(optimizer="adam", learning_rate=SFCN_LEARNING_RATE, schedule=ConstantSchedule(),
                            patience=SFCN_PATIENCE, epochs=epochs, batch_size=batch_size)


@PRESETS.register("sfcn")
def sfcn_preset(modality: str = "t1") -> Preset:
    """SFCN (Peng et al.; REFERENCE_SEEDS.md section C.1): ``sfcn_encode`` at 32, 64, 128, 256, 256 channels with a
    64-wide bottleneck and dropout 0.5, and the ``soft_label`` head on 40 one-year bins over [42, 82) with sigma 1;
    Adam at 3e-4, batch 20, patience 3. Use it with ``--encoder_blocks sfcn_encode --decoder_blocks soft_label``, the
    input ``t1_sfcn`` and the output ``age``. ``modality`` is accepted for the preset interface (T1 only).
    """
    return Preset(ModelConfig(sfcn=SFCNConfig(), soft_label=SoftLabelConfig(), preset="sfcn"),
                  _sfcn_training(100, SFCN_BATCH_SIZE))


@PRESETS.register("sfcn_small")
def sfcn_small_preset(modality: str = "t1") -> Preset:
    """SFCN reduced for the demo's 3 mm volumes (64x80x64) and a few hundred subjects on a CPU: SFCN's five stages
    at 16, 32, 64, 64, 64 channels, a 32-wide bottleneck, the soft-label head over the demo's ages (40-85) in
    three-year bins with sigma 3; the seed's optimizer, batch 8.

    Why not fewer stages or the seed's bins: with four stages the global average pools a 4x5x4 map, and on the
    demo's 240 training subjects the model learnt no age in 12 epochs (training MAE the spread of age), while
    five (a 2x2x2 map, as SFCN's five reach 5x6x5 at 1 mm) learnt it. One-year bins with sigma 1 hold about six
    training subjects each; the head then learns the age distribution first and the image only slowly
    (validation r 0.1-0.8 after 8 epochs, by seed), against r 0.91 after 2 epochs with three-year bins.
    """
    model = ModelConfig(sfcn=SFCNConfig(channels=(16, 32, 64, 64, 64), bottleneck=32),
                        soft_label=SoftLabelConfig(40.0, 85.0, 3.0, 3.0), preset="sfcn_small")
    return Preset(model, _sfcn_training(30, 8))
