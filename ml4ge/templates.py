"""Start the templates (:class:`ml4ge.models.layers.Template`) at the training split's mean: decoders add it,
encoders subtract it from their input (centring, as PCA does, in a stock ``keras.layers.Normalization``).

A decoder that must first learn the cohort's mean image weight by weight spends most of a short training doing
it (docs/experiments.md). Set to the mean before training, the template leaves the network only the differences
between subjects to learn.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import h5py
import keras
import numpy as np

from ml4ge.arrays import center_crop_or_pad
from ml4ge.nifti import INPUT_ERRORS

log = logging.getLogger(__name__)

MAX_SAMPLES = 256  # evenly spaced training samples averaged


def template_layers(model) -> dict[str, list[tuple]]:
    """``{TensorMap name: [(layer, sign), ...]}``: decoders' :class:`~ml4ge.models.layers.Template` layers add the
    mean (sign +1); encoders subtract it from their input, in their centring ``keras.layers.Normalization`` (sign
    +1: it subtracts its mean itself) or, in models built before it, a frozen ``Template`` (sign -1)."""
    found: dict[str, list[tuple]] = {}
    for models in (getattr(model, "encoders", {}), getattr(model, "decoders", {})):  # a family may have none
        for name, part in models.items():
            found.setdefault(name, []).extend(_templates_of(part))
    return {name: layers for name, layers in found.items() if layers}


def _templates_of(part) -> list[tuple]:
    from ml4ge.models.conv import CENTRING
    from ml4ge.models.layers import Template

    found = []
    for layer in part.layers:
        if isinstance(layer, Template):
            found.append((layer, 1.0 if layer.trainable else -1.0))
        elif isinstance(layer, keras.layers.Normalization) and f"_{CENTRING}_" in layer.name:
            found.append((layer, 1.0))
    return found


def set_template(layer, values: np.ndarray) -> None:
    """Start ``layer`` (a Template, or a centring Normalization that subtracts it) at ``values``, centrally padded
    to the layer's shape as the encoder pads its input."""
    if isinstance(layer, keras.layers.Normalization):
        layer.adapt_mean.assign(center_crop_or_pad(values, layer.adapt_mean.shape))
        layer.finalize_state()  # the layer computes with a copy of its mean made here
    else:
        layer.template.assign(values)


def mean_tensors(paths: Sequence[Path], tmaps, limit: int = MAX_SAMPLES) -> dict[str, np.ndarray]:
    """The mean normalized tensor of each map over up to ``limit`` evenly spaced ``paths``.

    A sample that cannot be read is left out with a warning naming it and why.

    Raises:
        ValueError: if no sample could be read for a map.
    """
    chosen = [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, min(limit, len(paths))).astype(int))]
    sums = {tm.name: np.zeros(tm.shape, dtype=np.float64) for tm in tmaps}
    counts = dict.fromkeys(sums, 0)
    for path in chosen:
        with h5py.File(path, "r") as hd5:
            for tm in tmaps:
                try:
                    array, _ = tm.tensor(hd5, Path(path).stem)
                except INPUT_ERRORS as error:
                    log.warning("template: %s left out of the %s mean: %s", path, tm.name, error)
                    continue
                sums[tm.name] += array
                counts[tm.name] += 1
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise ValueError(f"no training sample could be read for {', '.join(empty)}; see the warnings above.")
    return {name: (sums[name] / counts[name]).astype(np.float32) for name in sums}


def initialize_templates(model, paths: Sequence[Path], tmaps) -> None:
    """Set every template to the mean of its map over the training ``paths``: decoders add it, encoders subtract it
    from their input (a no-op without templates). ``tmaps``: the model's input and output TensorMaps."""
    layers = template_layers(model)
    if not layers:
        return
    tmaps = list({tm.name: tm for tm in tmaps if tm.name in layers}.values())
    means = mean_tensors(list(paths), tmaps)
    for tm in tmaps:
        for layer, sign in layers[tm.name]:
            set_template(layer, sign * means[tm.name])
        log.info("templates of %s set to the mean of %d training samples", tm.name, min(MAX_SAMPLES, len(paths)))
