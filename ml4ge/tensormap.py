"""TensorMap: a small frozen description of one tensor stored in per-sample HD5 files.

A TensorMap says what a tensor is (interpretation, shape), where it lives in a sample's HD5 file (group,
dataset, instance), how it is turned into a model input (shape fitting, mask, normalization, augmentation)
and how a model predicts it (loss, activation, metrics; defaults from one interpretation table).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

import h5py
import numpy as np

from ml4ge.arrays import fit_to_shape
from ml4ge.hd5 import read_axial_slices, read_dataset


class Interpretation(str, Enum):
    """What the values of a tensor mean; drives the default loss, activation and metrics."""

    CONTINUOUS = "continuous"
    CATEGORICAL = "categorical"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Defaults:
    loss: str
    activation: str
    metrics: tuple[str, ...]


# The one table of defaults, keyed by (interpretation, masked). Loss names resolve in ml4ge.models.losses.
DEFAULTS: dict[tuple[Interpretation, bool], Defaults] = {
    (Interpretation.CONTINUOUS, False): Defaults("mse", "linear", ("mae",)),
    (Interpretation.CONTINUOUS, True): Defaults("masked_mse", "linear", ()),
    (Interpretation.CATEGORICAL, False): Defaults("categorical_crossentropy", "softmax", ("categorical_accuracy",)),
    (Interpretation.CATEGORICAL, True): Defaults("categorical_crossentropy", "softmax", ("categorical_accuracy",)),
}

NONZERO = "nonzero"
Reader = Callable[["TensorMap", h5py.File, str], np.ndarray]
Augmentation = Callable[[np.ndarray, np.random.Generator], np.ndarray]
Validator = Callable[["TensorMap", np.ndarray], None]


def keras_safe(name: str) -> str:
    """``name`` with every character Keras does not accept in layer names replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


@dataclass(frozen=True, eq=False)
class TensorMap:
    """Description of one tensor.

    Args:
        name: unique name; Keras input/output names derive from it.
        shape: shape of one sample, channels last (``(64, 64, 64, 1)`` for a volume, ``(1,)`` for a scalar).
        interpretation: continuous or categorical.
        group: HD5 group the dataset lives under (``ukb_brain_mri``); empty for the file root.
        dataset: dataset name under ``group``; defaults to ``name``.
        instance: ``"first"``, ``"last"`` or an instance number.
        dtype: dtype of the model tensor.
        normalization: a normalizer from :mod:`ml4ge.normalizers` (``transform(x, mask)``).
        mask: ``"nonzero"`` (nonzero voxels of the raw array), another TensorMap (its nonzero voxels) or None.
        channel_map: ``{label: index}`` for categorical maps; a stored scalar index becomes one-hot.
        loss, activation, metrics: default from :data:`DEFAULTS`.
        loss_weight: weight of this output's loss in the total.
        validator: ``f(tm, raw_array)`` raising ``ValueError`` to reject a sample (NaN/Inf are always rejected).
        augmentations: ``f(array, rng) -> array`` applied in training only, before masking and normalization.
        reader: ``f(tm, hd5, sample_id) -> array`` replacing the default HD5 read.
        resize: resample to ``shape`` instead of the default centred crop/pad.
        fallback: a map whose raw array is read (and fitted to ``shape``) when this map's dataset is missing;
            this is how downsampled maps are produced on read from full-resolution tensors.
        axial_slices: read these axial slice indices as channels (2.5-D stacks).
        voxel_mm: the voxel size (mm; one number if isotropic, else three) of the NIfTI volumes the map takes as
            stored; tensorize refuses a volume of another voxel size (unless the map or ``--resample`` resamples
            it). None: not checked.

    Example:
        >>> age = TensorMap("age", shape=(1,), group="phenotypes")
        >>> age.input_name, age.loss
        ('input_age', 'mse')
    """

    name: str
    shape: tuple[int, ...]
    interpretation: Interpretation = Interpretation.CONTINUOUS
    group: str = ""
    dataset: str | None = None
    instance: str | int = "first"
    dtype: str = "float32"
    normalization: object | None = None
    mask: str | TensorMap | None = None
    channel_map: Mapping[str, int] | None = None
    loss: str | object | None = None
    activation: str | None = None
    metrics: tuple[str, ...] | None = None
    loss_weight: float = 1.0
    validator: Validator | None = None
    augmentations: tuple[Augmentation, ...] = ()
    reader: Reader | None = None
    resize: bool = False
    fallback: TensorMap | None = None
    axial_slices: tuple[int, ...] | None = None
    voxel_mm: float | tuple[float, float, float] | None = None
    description: str = field(default="", repr=False)

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "interpretation", Interpretation(self.interpretation))
        if self.mask not in (None, NONZERO) and not isinstance(self.mask, TensorMap):
            raise ValueError(f"TensorMap {self.name!r}: mask must be None, 'nonzero' or a TensorMap, got {self.mask!r}")
        if self.channel_map is not None and len(self.channel_map) != self.shape[-1]:
            raise ValueError(
                f"TensorMap {self.name!r}: channel_map has {len(self.channel_map)} labels but shape {self.shape} "
                f"ends in {self.shape[-1]}; make them agree."
            )
        defaults = DEFAULTS[(self.interpretation, self.mask is not None)]
        for attribute in ("loss", "activation", "metrics"):
            if getattr(self, attribute) is None:
                object.__setattr__(self, attribute, getattr(defaults, attribute))

    # Identity: names are unique, so a TensorMap is known by its name.
    def __eq__(self, other) -> bool:
        return isinstance(other, TensorMap) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def key(self) -> str:
        """HD5 path of the dataset group, ``<group>/<dataset>``."""
        leaf = self.dataset or self.name
        return f"{self.group}/{leaf}" if self.group else leaf

    @property
    def input_name(self) -> str:
        return f"input_{keras_safe(self.name)}"

    @property
    def output_name(self) -> str:
        return f"output_{keras_safe(self.name)}"

    @property
    def presence_name(self) -> str:
        """Name of the per-sample flag (1 present, 0 absent) that comes with an optional map."""
        return f"present_{keras_safe(self.name)}"

    @property
    def is_scalar(self) -> bool:
        return len(self.shape) == 1

    @property
    def rank(self) -> int:
        """Number of spatial axes (1 for a signal or vector, 2 for an image, 3 for a volume)."""
        return max(len(self.shape) - 1, 1)

    def with_changes(self, **changes) -> TensorMap:
        """A copy with some fields changed (``name`` should change too, to keep names unique)."""
        return replace(self, **changes)

    # Reading -------------------------------------------------------------------------------------------
    def read_raw(self, hd5: h5py.File, sample_id: str = "") -> np.ndarray:
        """The stored array, before shape fitting and normalization.

        Raises:
            KeyError: if the dataset is missing (and there is no fallback that has it).
        """
        if self.reader is not None:
            return np.asarray(self.reader(self, hd5, sample_id))
        try:
            if self.axial_slices is not None:
                return read_axial_slices(hd5, self.key, self.axial_slices, self.instance)
            return np.asarray(read_dataset(hd5, self.key, self.instance))
        except KeyError:
            if self.fallback is None:
                raise
            return self.fallback.read_raw(hd5, sample_id)

    def fit_shape(self, raw: np.ndarray) -> np.ndarray:
        """Fit a raw array to :attr:`shape` (one-hot for categorical indices, crop/pad or resample otherwise).

        Raises:
            ValueError: for complex values (a cast to real would drop their imaginary part silently).
        """
        raw = np.asarray(raw)
        if np.iscomplexobj(raw):
            raise ValueError(f"{self.name}: the stored values are complex ({raw.dtype}); store real numbers")
        if self.channel_map is not None and raw.size == 1 and self.shape[-1] > 1:
            return self._one_hot(raw)
        if self.is_scalar:
            if raw.size != self.shape[0]:
                raise ValueError(f"{self.name}: expected {self.shape[0]} values, found shape {raw.shape}")
            return raw.reshape(self.shape).astype(self.dtype)
        return fit_to_shape(raw, self.shape, resize=self.resize).astype(self.dtype)

    def _one_hot(self, raw: np.ndarray) -> np.ndarray:
        index = int(raw.reshape(-1)[0])
        if not 0 <= index < self.shape[-1]:
            raise ValueError(f"{self.name}: category index {index} outside 0..{self.shape[-1] - 1}")
        one_hot = np.zeros(self.shape, dtype=self.dtype)
        one_hot[..., index] = 1
        return one_hot

    def validate(self, raw: np.ndarray) -> None:
        """Reject NaN/Inf and whatever the user's validator rejects.

        Raises:
            ValueError: with the reason.
        """
        if np.issubdtype(raw.dtype, np.number) and not np.all(np.isfinite(raw)):
            raise ValueError(f"{self.name}: contains NaN or Inf")
        if self.validator is not None:
            self.validator(self, raw)

    def mask_array(self, fitted: np.ndarray, hd5: h5py.File, sample_id: str = "") -> np.ndarray | None:
        """Float mask (1 inside, 0 outside) of this map's shape, or None without a mask."""
        if self.mask is None:
            return None
        if self.mask == NONZERO:
            source = fitted
        else:
            source = self.mask.fit_shape(self.mask.read_raw(hd5, sample_id))
        return (np.asarray(source) != 0).astype(self.dtype)

    def tensor(
        self, hd5: h5py.File, sample_id: str = "", augment: bool = False, rng: np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Read, validate, fit, augment (training only), mask and normalize one sample's tensor.

        Returns:
            ``(array, mask)``; ``mask`` is None for maps without one. The mask comes from the raw values,
            before normalization, so it survives a normalization that moves the background off zero.

        Raises:
            KeyError, ValueError, OSError: for a missing dataset, bad values or an unreadable file.
        """
        raw = self.read_raw(hd5, sample_id)
        self.validate(raw)
        x = self.fit_shape(raw)
        if augment:
            rng = rng or np.random.default_rng()
            for augmentation in self.augmentations:
                x = augmentation(x, rng)
        mask = self.mask_array(x, hd5, sample_id)
        if self.normalization is not None:
            x = self.normalization.transform(x, mask).astype(self.dtype)
        return x, mask

    def target(self, array: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """The training target for this map as an output: with a mask, the mask is packed as extra channels.

        Masked losses (``masked_mse``) split the last axis back into ``(values, mask)``.
        """
        return array if mask is None else np.concatenate([array, mask], axis=-1)
