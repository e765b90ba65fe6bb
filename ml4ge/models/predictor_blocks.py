"""The branches and head of the ``predictor`` family, as functions on symbolic tensors (the seed's network,
REFERENCE_SEEDS.md D.2).

- :func:`residual_stage`: 1x1x1 skip conv; conv 3 -> GELU -> conv 3; add; BatchNorm -> GELU -> max-pool 2 ->
  dropout.
- :func:`imaging_branch`: the imaging volumes stacked as channels of one 3-D CNN (early fusion; a missing contrast
  is a zero channel), its stages, then flatten -> dense -> BatchNorm -> GELU.
- :func:`dense_branch`: a vector or tabular domain: BatchNorm of the raw values, then dense -> BatchNorm -> GELU ->
  dropout per width.
- :func:`head`: dense -> BatchNorm -> GELU -> dropout per width; one output layer per target map.

Every BatchNorm of a branch whose input may be absent takes the branch's presence flag
(:class:`~ml4ge.models.predictor_layers.PresenceBatchNorm`), so absent samples take no part in its statistics; the
branch's output is then gated to zeros for them (:class:`~ml4ge.models.predictor_layers.Gate`).
"""

from __future__ import annotations

import keras

from ml4ge.models.predictor_config import PredictorConfig, TargetScale
from ml4ge.models.predictor_layers import Gate, MeanSquareL2, PresenceBatchNorm, Unscale
from ml4ge.tensormap import TensorMap, keras_safe

GELU = "gelu"


def _l2(scale: float):
    return MeanSquareL2(scale) if scale > 0 else None


def _norm(x, presence, name: str):
    layer = PresenceBatchNorm(momentum=0.9, epsilon=1e-5, name=name)
    return layer(x) if presence is None else layer(x, presence=presence)


def residual_stage(x, filters: int, presence, config: PredictorConfig, name: str):
    """One residual stage of the seed's CNN; halves every spatial axis."""
    conv = dict(kernel_regularizer=_l2(config.l2))
    skip = keras.layers.Conv3D(filters, 1, name=f"{name}_skip", **conv)(x)
    y = keras.layers.Conv3D(filters, 3, padding="same", name=f"{name}_conv1", **conv)(x)
    y = keras.layers.Activation(GELU, name=f"{name}_gelu1")(y)
    y = keras.layers.Conv3D(filters, 3, padding="same", name=f"{name}_conv2", **conv)(y)
    y = keras.layers.Add(name=f"{name}_add")([y, skip])
    y = _norm(y, presence, f"{name}_norm")
    y = keras.layers.Activation(GELU, name=f"{name}_gelu2")(y)
    y = keras.layers.MaxPooling3D(2, name=f"{name}_pool")(y)
    return keras.layers.Dropout(config.cnn_dropout, name=f"{name}_dropout")(y)


def imaging_branch(volumes: list, presence, config: PredictorConfig):
    """``[B, width]`` of the volumes stacked as channels; zeros for samples with none of them (``presence``)."""
    x = volumes[0] if len(volumes) == 1 else keras.layers.Concatenate(axis=-1, name="imaging_channels")(volumes)
    for index, filters in enumerate(config.stages):
        x = residual_stage(x, filters, presence, config, f"cnn_stage{index}")
    x = keras.layers.Flatten(name="cnn_flatten")(x)
    x = keras.layers.Dense(config.width, kernel_regularizer=_l2(config.l2), name="cnn_dense")(x)
    x = _norm(x, presence, "cnn_dense_norm")
    x = keras.layers.Activation(GELU, name="cnn_dense_gelu")(x)
    return x if presence is None else Gate(name="cnn_gate")([x, presence])


def dense_branch(x, tm: TensorMap, tabular: bool, presence, config: PredictorConfig):
    """``[B, last width]`` of a vector (``tabular`` False) or tabular domain; zeros where ``presence`` is 0."""
    name = f"branch_{keras_safe(tm.name)}"
    widths = config.tabular_widths if tabular else config.vector_widths
    dropout = config.tabular_dropout if tabular else config.vector_dropout
    x = _norm(x, presence, f"{name}_input_norm")  # raw columns come in their own units (mL, years)
    for index, width in enumerate(widths):
        first_scale = config.l2 if tabular or index else 10 * config.l2  # the seed's 1e-3 on connectivity's first
        x = keras.layers.Dense(width, kernel_regularizer=_l2(first_scale), name=f"{name}_dense{index}")(x)
        x = _norm(x, presence, f"{name}_norm{index}")
        x = keras.layers.Activation(GELU, name=f"{name}_gelu{index}")(x)
        if not tabular or index < len(widths) - 1:
            x = keras.layers.Dropout(dropout, name=f"{name}_dropout{index}")(x)
    return x if presence is None else Gate(name=f"{name}_gate")([x, presence])


def head(features, output_maps: list[TensorMap], scales: dict[str, dict], config: PredictorConfig) -> dict:
    """``{tm.output_name: prediction}``: probabilities for categorical maps, original units for continuous ones
    (the last dense layer predicts the scaled target; :class:`Unscale` maps it back)."""
    x = features
    for index, width in enumerate(config.head_widths):
        x = keras.layers.Dense(width, kernel_regularizer=_l2(config.l2), name=f"head_dense{index}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"head_norm{index}")(x)
        x = keras.layers.Activation(GELU, name=f"head_gelu{index}")(x)
        x = keras.layers.Dropout(config.head_dropout, name=f"head_dropout{index}")(x)
    outputs = {}
    for tm in output_maps:
        name = keras_safe(tm.name)
        if tm.interpretation == "categorical":
            outputs[tm.output_name] = keras.layers.Dense(tm.shape[-1], activation=tm.activation or "softmax",
                                                         name=tm.output_name)(x)
            continue
        scaled = keras.layers.Dense(tm.shape[-1], kernel_regularizer=_l2(config.l2), name=f"scaled_{name}")(x)
        scale = TargetScale(**scales[tm.name])
        outputs[tm.output_name] = Unscale(scale.mean, scale.sd, scale.low, scale.high, name=tm.output_name)(scaled)
    return outputs
