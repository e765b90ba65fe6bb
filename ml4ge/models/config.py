"""Typed configurations of the model blocks, built from the command-line arguments.

Each block kind gets one small frozen dataclass holding only what it uses (a conv encoder gets a
:class:`ConvConfig` and a :class:`DenseConfig`, the pair merge a :class:`PairConfig`), never the whole
argparse namespace. :meth:`ModelConfig.from_args` is the one place where flags become configs.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field, fields, replace

from ml4ge.models.sfcn_config import SFCNConfig, SoftLabelConfig
from ml4ge.models.vit_config import ViTConfig

# The structures conv_encode/conv_decode build (--conv_style); ml4h's is the default so that ml4h command lines build
# ml4h's model. Saved configurations without a style were built before the ml4h style existed: plain.
CONV_STYLES = ("ml4h", "plain")
LEGACY_CONV_STYLE = "plain"


def _ints(values, flag: str, allow_empty: bool = False) -> tuple[int, ...]:
    values = tuple(int(v) for v in (values or ()))
    if not values and not allow_empty:
        raise ValueError(f"{flag} needs at least one value, got none.")
    if any(v <= 0 for v in values):
        raise ValueError(f"{flag} values must be positive, got {list(values)}.")
    return values


def _tuples(value):
    """Lists read back from JSON become tuples again (nested for ``pairs``)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _typed(cls, data: dict):
    known = {f.name for f in fields(cls)}
    return cls(**{key: _tuples(value) for key, value in data.items() if key in known})


def pair_from_args(args: argparse.Namespace) -> PairConfig:
    """The pair merge settings of ``--pairs``, ``--pair_loss``, ``--pair_loss_weight`` and ``--pair_merge``."""
    return PairConfig(
        pairs=tuple(tuple(p) for p in args.pairs or ()),
        loss=args.pair_loss,
        weight=float(args.pair_loss_weight),
        merge=args.pair_merge,
    )


def vit_from_args(args: argparse.Namespace) -> ViTConfig:
    """The ViT blocks' settings of the ``--vit_*`` flags (ViTConfig's defaults where a namespace lacks them).

    Raises:
        ValueError: for a non-positive size or a width that is not a multiple of its heads.
    """
    names = [f.name for f in fields(ViTConfig) if f.name != "kept_tokens"]
    given = {name: getattr(args, f"vit_{name}") for name in names if getattr(args, f"vit_{name}", None) is not None}
    if "patch" in given:
        given["patch"] = _ints(given["patch"], "--vit_patch")
    return ViTConfig(**given)


def sfcn_from_args(args: argparse.Namespace) -> SFCNConfig:
    """The ``sfcn_encode`` settings of ``--sfcn_channels`` and ``--sfcn_dropout`` (SFCN's where a namespace lacks
    them)."""
    default = SFCNConfig()
    channels = getattr(args, "sfcn_channels", None)
    return SFCNConfig(channels=_ints(channels, "--sfcn_channels") if channels else default.channels,
                      dropout=float(getattr(args, "sfcn_dropout", default.dropout)))


def soft_label_from_args(args: argparse.Namespace, base: SoftLabelConfig | None = None) -> SoftLabelConfig:
    """The ``soft_label`` head's bins: ``base`` (a preset's; by default the seed's) with each of
    ``--soft_label_range``, ``--soft_label_width`` and ``--soft_label_sigma`` that differs from its default applied,
    so that giving the range alone keeps a preset's width and sigma."""
    default, base = SoftLabelConfig(), base or SoftLabelConfig()
    start, stop = getattr(args, "soft_label_range", None) or (default.start, default.stop)
    width = float(getattr(args, "soft_label_width", default.width))
    sigma = float(getattr(args, "soft_label_sigma", default.sigma))
    given = (float(start), float(stop)) != (default.start, default.stop)
    return SoftLabelConfig(float(start) if given else base.start, float(stop) if given else base.stop,
                           width if width != default.width else base.width,
                           sigma if sigma != default.sigma else base.sigma)


@dataclass(frozen=True)
class ConvConfig:
    """Convolutional encoder/decoder settings.

    Args:
        layers: widths of the stem convolutions (``--conv_layers``); the decoder ends with them, mirrored.
        stages: widths of the stages after the stem (``--dense_blocks``); each stage pools then convolves.
        block_size: convolutions per stage (``--block_size``).
        kernel_1d: kernel sizes for 1-D signals (``--conv_width``).
        kernel_x, kernel_y, kernel_z: kernel sizes per axis for images and volumes (``--conv_x/y/z``).
            The i-th convolution uses the i-th entry; the last entry repeats.
        pool: pooling factor per spatial axis (x, y, z) (``--pool_x/y/z``).

    The defaults are ml4h's (kernel 3x3x2, no pooling along z) and are also the command line's: the flag table
    reads them from here.
        pool_type: ``max`` or ``average`` (``--pool_type``).
        activation, normalize, regularize, regularize_rate: names looked up in :mod:`ml4ge.models.blocks`.
        upsample: ``upsampling`` (repeat voxels, as ml4h) or ``transpose`` (stride-``pool`` transposed
            convolutions without normalization or activation, as UDIP).
        template: the decoder adds a learned template image to its output (:class:`ml4ge.models.layers.Template`).
        style: ``ml4h`` (ml4h's residual stem, DenseNet stages of ``block_size`` concatenating convolutions, activated
            embedding and ml4h's decoder; :mod:`ml4ge.models.conv_ml4h`) or ``plain`` (plain conv stages, linear
            embedding, mirrored decoder; UDIP's preset and the demo) (``--conv_style``).

    Example:
        >>> ConvConfig(layers=(16, 16), stages=(32, 64), block_size=2).kernel(3, 0)
        (3, 3, 2)
    """

    layers: tuple[int, ...] = (32,)
    stages: tuple[int, ...] = (32, 32, 32)
    block_size: int = 3
    kernel_1d: tuple[int, ...] = (71,)
    kernel_x: tuple[int, ...] = (3,)
    kernel_y: tuple[int, ...] = (3,)
    kernel_z: tuple[int, ...] = (2,)
    pool: tuple[int, int, int] = (2, 2, 1)
    pool_type: str = "max"
    activation: str = "swish"
    normalize: str | None = None
    regularize: str | None = None
    regularize_rate: float = 0.0
    upsample: str = "upsampling"
    template: bool = False
    style: str = "ml4h"

    def __post_init__(self):
        if self.block_size < 0:
            raise ValueError(f"block_size must be >= 0, got {self.block_size}.")
        if self.upsample not in ("upsampling", "transpose"):
            raise ValueError(f"upsample must be 'upsampling' or 'transpose', got {self.upsample!r}.")
        if self.pool_type not in ("max", "average"):
            raise ValueError(f"pool_type must be 'max' or 'average', got {self.pool_type!r}.")
        if self.style not in CONV_STYLES:
            raise ValueError(f"conv style (--conv_style) must be one of {', '.join(CONV_STYLES)}, got {self.style!r}.")

    def kernel(self, rank: int, index: int) -> tuple[int, ...]:
        """Kernel of the ``index``-th convolution for a map with ``rank`` spatial axes."""
        per_axis = (self.kernel_1d,) if rank == 1 else (self.kernel_x, self.kernel_y, self.kernel_z)[:rank]
        return tuple(sizes[min(index, len(sizes) - 1)] for sizes in per_axis)

    def pool_size(self, rank: int) -> tuple[int, ...]:
        """Pooling factor per spatial axis for a map with ``rank`` spatial axes (x for 1-D signals)."""
        return tuple(self.pool[:rank])

    def widths(self, channels: int) -> tuple[int, ...]:
        """Channel widths entering the first stage and leaving every stage, for ``channels`` input channels."""
        return (self.layers[-1] if self.layers else channels, *self.stages)


@dataclass(frozen=True)
class DenseConfig:
    """Dense layers after the convolutions or on vector maps.

    Args:
        widths: dense widths (``--dense_layers``); the last is the latent size and its layer is linear.
        activation, normalize, regularize, regularize_rate: names looked up in :mod:`ml4ge.models.blocks`.
    """

    widths: tuple[int, ...] = (256,)
    activation: str = "swish"
    normalize: str | None = None
    regularize: str | None = None
    regularize_rate: float = 0.0

    def __post_init__(self):
        if not self.widths:
            raise ValueError("DenseConfig.widths needs at least one width (the latent size).")

    @property
    def latent_size(self) -> int:
        return self.widths[-1]

    @property
    def hidden(self) -> tuple[int, ...]:
        return self.widths[:-1]


@dataclass(frozen=True)
class PairConfig:
    """The pair merge: which embeddings are tied, by which loss, and how they are fused.

    Args:
        pairs: ``((A, B), ...)`` TensorMap names; empty means "the two inputs" when there are exactly two.
        loss: ``contrastive``, ``cosine`` or ``euclid``.
        weight: factor of the pair loss in the total loss.
        merge: ``dropout`` (DropFuse), ``average`` or ``concat``.
    """

    pairs: tuple[tuple[str, str], ...] = ()
    loss: str = "contrastive"
    weight: float = 1.0
    merge: str = "dropout"


@dataclass(frozen=True)
class ModelConfig:
    """Everything the factory needs besides TensorMaps and block names.

    Example:
        >>> from ml4ge.arguments import build_parser
        >>> config = ModelConfig.from_args(build_parser().parse_args(["--mode", "train", "--dense_layers", "64"]))
        >>> config.dense.latent_size
        64
    """

    conv: ConvConfig = field(default_factory=ConvConfig)
    dense: DenseConfig = field(default_factory=DenseConfig)
    pair: PairConfig = field(default_factory=PairConfig)
    vit: ViTConfig = field(default_factory=ViTConfig)
    preset: str | None = None
    sfcn: SFCNConfig = field(default_factory=SFCNConfig)
    soft_label: SoftLabelConfig = field(default_factory=SoftLabelConfig)

    @property
    def latent_size(self) -> int:
        return self.dense.latent_size

    def with_changes(self, **changes) -> ModelConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain JSON-able data (tuples become lists); :meth:`from_dict` reverses it."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """The configuration :meth:`to_dict` wrote (as stored in a saved model's config)."""
        return cls(
            conv=_typed(ConvConfig, {"style": LEGACY_CONV_STYLE, **data.get("conv", {})}),
            dense=_typed(DenseConfig, data.get("dense", {})),
            pair=_typed(PairConfig, data.get("pair", {})),
            vit=_typed(ViTConfig, data.get("vit", {})),
            preset=data.get("preset"),
            sfcn=_typed(SFCNConfig, data.get("sfcn", {})),
            soft_label=_typed(SoftLabelConfig, data.get("soft_label", {})),
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ModelConfig:
        """The architecture the flags describe; ``--model_preset`` replaces the architecture flags.

        Raises:
            ValueError: for empty or non-positive widths.
            UnknownNameError: for an unknown preset (with the closest names).
        """
        conv = ConvConfig(
            layers=_ints(args.conv_layers, "--conv_layers", allow_empty=True),
            stages=_ints(args.dense_blocks, "--dense_blocks", allow_empty=True),
            block_size=int(args.block_size),
            kernel_1d=_ints(args.conv_width, "--conv_width"),
            kernel_x=_ints(args.conv_x, "--conv_x"),
            kernel_y=_ints(args.conv_y, "--conv_y"),
            kernel_z=_ints(args.conv_z, "--conv_z"),
            pool=(int(args.pool_x), int(args.pool_y), int(args.pool_z)),
            pool_type=args.pool_type,
            activation=args.activation,
            normalize=args.conv_normalize,
            regularize=args.conv_regularize,
            regularize_rate=float(args.conv_regularize_rate),
            template=bool(getattr(args, "decoder_template", False)),
            style=getattr(args, "conv_style", ConvConfig.style),
        )
        dense = DenseConfig(
            widths=_ints(args.dense_layers, "--dense_layers"),
            activation=args.activation,
            normalize=args.dense_normalize,
            regularize=args.dense_regularize,
            regularize_rate=float(args.dense_regularize_rate),
        )
        return cls(conv=conv, dense=dense, pair=pair_from_args(args), vit=vit_from_args(args),
                   sfcn=sfcn_from_args(args), soft_label=soft_label_from_args(args))
