"""Demo presets: cohort size and grid, the TensorMaps, and the train settings of the demo models."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ml4ge.registry import Registry


@dataclass(frozen=True)
class DemoSettings:
    """One demo configuration: cohort size and grid, the TensorMaps, and the model/training flags of every model.

    Args:
        preset: name of the preset these settings came from.
        subjects, voxel_mm, snps: passed to :func:`ml4ge.demo.cohort.write_demo_cohort`.
        t1, t2: TensorMap names as recipes resolve them.
        t1_deep: the TensorMap of the deep-brain autoencoder: a central crop of the T1 volumes.
        epochs, batch_size: training of each model.
        deep_epoch_factor: the deep-brain autoencoder trains this many times ``epochs``; its crop is about a tenth
            of the volume, and so is an epoch.
        model_flags: the train recipe's model and optimizer flags as ``{flag: value}`` (fields of
            :class:`ml4ge.recipes.train.TrainSettings`), shared by every demo model.
        pair_flags: extra flags of the DropFuse pair model, likewise.
        folds: cross-validation folds of compare.
    """

    preset: str
    subjects: int
    voxel_mm: float
    t1: str
    t2: str
    t1_deep: str
    epochs: int
    batch_size: int
    model_flags: dict[str, Any]
    pair_flags: dict[str, Any] = field(default_factory=lambda: {"pair_loss": "contrastive", "pair_loss_weight": 0.1,
                                                                "pair_merge": "dropout"})
    snps: int = 2000
    folds: int = 5
    deep_epoch_factor: int = 3

    def fingerprint(self) -> dict:
        """The settings as a JSON-ready dict."""
        return asdict(self)


def small_model(stages: tuple[int, ...], latents: int = 32, pool: str = "max",
                normalize: str | None = None) -> dict[str, Any]:
    """Train flags of a small 3-D conv autoencoder: no stem, one 3^3 convolution per pooling stage, and a decoder
    template that starts at the training mean (``--decoder_template``).

    Swish, not ReLU: with ReLU the T2 autoencoder of the default demo died (every output 0, loss stuck at 1.0).

    Args:
        stages: channels of each stage; every stage halves the grid.
        latents: latent size (the last dense layer).
        pool: ``max`` or ``average`` pooling between stages.
        normalize: ``--conv_normalize`` (``batch_norm``) or None.

    Returns:
        The train recipe's model and optimizer flags as ``{flag: value}``.
    """
    return {"encoder_blocks": ("conv_encode",), "decoder_blocks": ("conv_decode",), "conv_layers": (),
            "dense_blocks": tuple(stages), "block_size": 1, "dense_layers": (latents,), "conv_x": (3,),
            "conv_y": (3,), "conv_z": (3,), "pool_x": 2, "pool_y": 2, "pool_z": 2, "pool_type": pool,
            "conv_normalize": normalize, "decoder_template": True, "activation": "swish", "learning_rate": 1e-3,
            "patience": 4, "conv_style": "plain", "patience_style": "ml4ge"}


PRESETS: Registry[DemoSettings] = Registry("demo preset")
# Default: average pooling keeps the partial-volume intensity that sub-voxel structure growth changes (max pooling
# drops it), three stages keep an 8x10x8 grid before the dense bottleneck, 128 latents (UDIP). Batches of 2 without
# batch norm, 10 epochs: on a CPU an epoch costs about the same whatever the batch, so small batches buy more
# updates for the same time (docs/experiments.md).
PRESETS.register("default", DemoSettings("default", 300, 3.0, "ml4ge.demo.maps.t1_3mm", "ml4ge.demo.maps.t2_3mm",
                                         "ml4ge.demo.maps.t1_deep_3mm", epochs=10, batch_size=2,
                                         model_flags=small_model((16, 32, 64), latents=128, pool="average")))
PRESETS.register("quick", DemoSettings("quick", 80, 5.0, "ml4ge.demo.maps.t1_5mm", "ml4ge.demo.maps.t2_5mm",
                                       "ml4ge.demo.maps.t1_deep_5mm", epochs=3, batch_size=8,
                                       model_flags=small_model((16, 32, 48))))
PRESETS.register("full_resolution", DemoSettings(
    "full_resolution", 300, 1.0, "t1", "t2", "ml4ge.demo.maps.t1_deep_1mm", epochs=30, batch_size=4,
    model_flags={"model_preset": "udip", "encoder_blocks": ("conv_encode",), "decoder_blocks": ("conv_decode",)}))
