"""Build and compile models of a registered family from TensorMaps, block names and settings.

Example:
    >>> model = build_model([t1], [t1], ["conv_encode"], ["concat"], ["conv_decode"], ModelConfig())
    >>> compile_model(model, [t1], learning_rate=1e-4)
    >>> model.fit({t1.input_name: x}, {t1.output_name: t1_target})
    >>> save_model(model, run_folder, "my_run")  # ml4ge.models.artifacts
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from ml4ge.models.builtins import load_builtins
from ml4ge.models.config import ModelConfig
from ml4ge.models.family import FamilyModel
from ml4ge.models.registries import FAMILIES
from ml4ge.training_settings import TrainingSettings


@dataclass(frozen=True)
class Architecture:
    """What a family builds from: its name, block names per role, their configuration and the optional maps.

    Args:
        family: a name in :data:`~ml4ge.models.registries.FAMILIES`, or the import path of a family class of
            your own (``--family``).
        encoder_blocks, merge_blocks, decoder_blocks: block names or saved part files (``--encoder_blocks``, ...).
        config: the blocks' :class:`ModelConfig`.
        optional: names of input maps a sample may lack (``--optional_tensors``).
        family_options: what the family reads of the flags (its ``options_from_args``; None: nothing), e.g. the
            :class:`~ml4ge.models.vae_config.VAEConfig` of the variational families.
    """

    family: str = "autoencoder"
    encoder_blocks: tuple[str, ...] = ("conv_encode",)
    merge_blocks: tuple[str, ...] = ("concat",)
    decoder_blocks: tuple[str, ...] = ("conv_decode",)
    config: ModelConfig = field(default_factory=ModelConfig)
    optional: tuple[str, ...] = ()
    family_options: object = None


def family_class(name: str) -> type:
    """The family registered as ``name``, or the class at the import path ``package.module.Class`` (a family of
    your own; import its module before loading a model it saved).

    Raises:
        UnknownNameError: for an unknown registered name (with the closest names).
        ValueError: for an import path that names no model family.
    """
    load_builtins()
    if name in FAMILIES or "." not in name:
        return FAMILIES.get(name)
    module, _, attribute = name.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"--family {name!r}: cannot import it ({error}); give a registered family "
                         f"({', '.join(FAMILIES.names())}) or package.module.Class on the Python path.") from None
    if not (isinstance(found, type) and issubclass(found, FamilyModel)):
        raise ValueError(f"--family {name!r} is not a model family (a subclass of ml4ge.models.family.FamilyModel).")
    return found


def build_family(architecture: Architecture, input_tmaps, output_tmaps):
    """The uncompiled model of ``architecture.family``, from its class's ``from_architecture``.

    Raises:
        UnknownNameError: for an unknown family or block (with the closest names).
        ValueError, FileNotFoundError: from the family's checks.
    """
    family = family_class(architecture.family)
    return family.from_architecture(architecture, list(input_tmaps), list(output_tmaps))


def build_model(input_tmaps, output_tmaps, encoder_blocks, merge_blocks, decoder_blocks,
                config: ModelConfig | None = None, optional=()):
    """An ``autoencoder``-family model (encoders -> merge -> decoders); see :func:`build_family`."""
    architecture = Architecture("autoencoder", tuple(encoder_blocks), tuple(merge_blocks), tuple(decoder_blocks),
                                config or ModelConfig(), tuple(optional))
    return build_family(architecture, input_tmaps, output_tmaps)


def compile_model(model, output_tmaps, learning_rate: float = 1e-4, optimizer: str = "adam",
                  jit_compile="auto", run_eagerly: bool = False, settings: TrainingSettings | None = None):
    """Compile ``model`` through its family's :meth:`compile_for_training`; returns the model.

    ``settings`` (optimizer, learning rate) wins over ``learning_rate``/``optimizer`` when given.
    """
    settings = settings or TrainingSettings(optimizer=optimizer, learning_rate=learning_rate)
    return model.compile_for_training(list(output_tmaps), settings, jit_compile=jit_compile, run_eagerly=run_eagerly)
