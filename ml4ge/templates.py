"""Start the templates (:class:`ml4ge.models.layers.Template`) at the training split's mean: decoders add it,
encoders subtract it from their input (centring, as PCA does).

A decoder that must first learn the cohort's mean image weight by weight spends most of a short training doing
it (docs/experiments.md). Set to the mean before training, the template leaves the network only the differences
between subjects to learn.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from ml4ge.tensorize import INPUT_ERRORS

log = logging.getLogger(__name__)

MAX_SAMPLES = 256  # evenly spaced training samples averaged


def template_layers(model) -> dict[str, list[tuple]]:
    """``{TensorMap name: [(Template layer, sign), ...]}``: decoders add the mean (sign +1), encoders subtract it
    from their input (sign -1)."""
    from ml4ge.models.layers import Template

    found: dict[str, list[tuple]] = {}
    kinds = {-1.0: getattr(model, "encoders", {}), 1.0: getattr(model, "decoders", {})}  # a family may have none
    for sign, models in kinds.items():
        for name, model in models.items():
            found.setdefault(name, []).extend((layer, sign) for layer in model.layers if isinstance(layer, Template))
    return {name: layers for name, layers in found.items() if layers}


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
            layer.template.assign(sign * means[tm.name])
        log.info("templates of %s set to the mean of %d training samples", tm.name, min(MAX_SAMPLES, len(paths)))
