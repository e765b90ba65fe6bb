"""Named architectures (``--model_preset``): block configurations and their training settings, as data.

``udip``: the UDIP 3-D convolutional autoencoder (Patel et al., ZhiGroup/DeepENDO; REFERENCE_SEEDS.md section A).
A 182x218x182 input is zero-padded centrally to 192x224x192 (the encoder pads to a multiple of 16), two 3x3x3
convolutions with 16 channels, four stages of 2x max-pooling then two convolutions (32, 64, 128, 256), BatchNorm
(momentum 0.9, eps 1e-5: PyTorch's defaults) and LeakyReLU(0.01) after every convolution, flatten, a linear dense
latent of 128 (the "ENDO"s), a linear dense back to 12x14x12x256, a mirrored decoder whose stages end in stride-2
transposed convolutions without norm or activation, two 16-channel convolutions, a linear 1x1x1 convolution, and
a central crop back to 182x218x182. About 138 M parameters at full size, 132.6 M of them in the two dense
layers. The same architecture serves smaller inputs (64^3, 96^3) for CPU work.

Use it with ``--model_preset udip --encoder_blocks conv_encode --decoder_blocks conv_decode`` and a masked
volume map (its default loss is the masked MSE), or ``udip_config("t1")`` from Python.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import keras

from ml4ge.models.config import ConvConfig, DenseConfig, ModelConfig, PairConfig, ReduceLRConfig
from ml4ge.registry import Registry

# Adam learning rates of the published UDIP runs (learning-rate-finder values).
UDIP_LEARNING_RATES = {"t1": 0.0005248074602497723, "t2": 0.0003019951720402019}
# Batch sizes of the published runs (T1 over 4 GPUs with synchronised BatchNorm; T2 as committed).
UDIP_BATCH_SIZES = {"t1": 36, "t2": 1}
UDIP_EPOCHS = 100

PRESETS: Registry = Registry("model preset")


@PRESETS.register("udip")
def udip_config(modality: str = "t1", latent_size: int = 128) -> ModelConfig:
    """The UDIP autoencoder with the learning rate of ``modality`` and ReduceLROnPlateau(0.5, 4, lr / 1000).

    Args:
        modality: ``t1`` or ``t2`` (chooses the learning rate).
        latent_size: width of the linear latent (UDIP: 128).

    Returns:
        A :class:`ModelConfig` with ``preset="udip"``.

    Raises:
        ValueError: for another modality.

    Example:
        >>> udip_config("t2").learning_rate
        0.0003019951720402019
    """
    if modality not in UDIP_LEARNING_RATES:
        raise ValueError(f"UDIP was trained on {sorted(UDIP_LEARNING_RATES)}, got modality {modality!r}.")
    conv = ConvConfig(
        layers=(16, 16), stages=(32, 64, 128, 256), block_size=2,
        kernel_1d=(3,), kernel_x=(3,), kernel_y=(3,), kernel_z=(3,),
        pool=(2, 2, 2), pool_type="max",
        activation="leaky_relu", normalize="batch_norm", upsample="transpose",
    )
    dense = DenseConfig(widths=(latent_size,), activation="leaky_relu")
    learning_rate = UDIP_LEARNING_RATES[modality]
    return ModelConfig(
        conv=conv, dense=dense, learning_rate=learning_rate, optimizer="adam",
        reduce_lr=ReduceLRConfig(factor=0.5, patience=4, min_lr=learning_rate / 1000), preset="udip",
    )


def _modality(input_names) -> str:
    names = [str(n).lower() for n in input_names or ()]
    return "t2" if names and all("t2" in n for n in names) else "t1"


def preset_from_args(args: argparse.Namespace) -> ModelConfig:
    """The preset named by ``--model_preset``, with the pair flags and an explicit ``--learning_rate`` applied.

    The learning rate follows the modality of the inputs (T2 when every input name contains ``t2``) unless
    ``--learning_rate`` differs from the parser default.

    Raises:
        UnknownNameError: for an unknown preset, with the closest names.
    """
    from ml4ge.arguments import build_parser

    config = PRESETS.get(args.model_preset)(_modality(getattr(args, "input_tensors", ())))
    pair = PairConfig(
        pairs=tuple(tuple(p) for p in args.pairs or ()), loss=args.pair_loss,
        weight=float(args.pair_loss_weight), merge=args.pair_merge,
    )
    config = config.with_changes(pair=pair, optimizer=args.optimizer)
    if args.learning_rate != build_parser().get_default("learning_rate"):
        learning_rate = float(args.learning_rate)
        reduce_lr = replace(config.reduce_lr, min_lr=learning_rate / 1000) if config.reduce_lr else None
        config = config.with_changes(learning_rate=learning_rate, reduce_lr=reduce_lr)
    return config


def reduce_lr_callback(config: ModelConfig) -> keras.callbacks.ReduceLROnPlateau | None:
    """The preset's ReduceLROnPlateau callback, or None when the config has none."""
    if config.reduce_lr is None:
        return None
    settings = config.reduce_lr
    return keras.callbacks.ReduceLROnPlateau(
        monitor=settings.monitor, factor=settings.factor, patience=settings.patience, min_lr=settings.min_lr
    )
