"""The model-family contract: a registered Keras ``Model`` subclass whose config is its whole spec.

A family (registered in :data:`ml4ge.models.registries.FAMILIES`) builds a Functional model keras-hub style: its
``__init__(spec)`` makes the layers, wires the functional graph and keeps ``spec`` as its config, so a saved
``.keras`` file says what it is and loads with plain ``keras.saving.load_model`` (after ``import ml4ge``).

The spec is JSON: ``{"family": name, "inputs": [map spec], "outputs": [map spec], ...}`` plus what the family
needs (blocks per TensorMap and their configs). A map spec holds what blocks read of a TensorMap (name, shape,
interpretation, activation); reading data stays with the TensorMaps the recipes resolve.

Training hooks are Keras' own: a family may override ``compute_loss`` or ``train_step``, return extra callbacks
from :meth:`FamilyModel.training_callbacks` (a KL-weight schedule) and compile a second optimizer in
:meth:`FamilyModel.compile_for_training` (a discriminator).
"""

from __future__ import annotations

import json

import keras

from ml4ge.tensormap import TensorMap


def map_spec(tm: TensorMap) -> dict:
    """What a block needs of ``tm``, as JSON."""
    return {"name": tm.name, "shape": list(tm.shape), "interpretation": str(tm.interpretation),
            "activation": tm.activation}


def map_from_spec(data: dict) -> TensorMap:
    """A TensorMap carrying what :func:`map_spec` stored (enough to build blocks, not to read data)."""
    return TensorMap(data["name"], shape=tuple(data["shape"]), interpretation=data["interpretation"],
                     activation=data["activation"])


class FamilyModel(keras.Model):
    """Base of the model families: a Functional model with ``encode``/``decode`` and its spec as its config.

    Subclasses build in ``__init__(spec, **kwargs)``, call ``super().__init__(inputs=..., outputs=..., **kwargs)``
    and then :meth:`set_spec`.
    """

    family = ""
    # Training batches that recompute the BatchNorm statistics before each validation (ml4ge.precise_bn) when
    # --precise_bn is not given; a family whose normalisation lags its weights sets it.
    precise_bn_batches = 0

    def set_spec(self, spec: dict) -> None:
        """Keep ``spec`` as plain JSON data, and the maps it describes. They are set past Keras' attribute tracking,
        which would turn dicts into tracked containers (and empty the nested Keras configs of saved parts)."""
        object.__setattr__(self, "_spec_json", json.dumps(spec))
        object.__setattr__(self, "_maps", ([map_from_spec(m) for m in spec["inputs"]],
                                           [map_from_spec(m) for m in spec["outputs"]]))

    @property
    def spec(self) -> dict:
        """The model's whole spec (a new copy on every access)."""
        return json.loads(self._spec_json)

    @property
    def input_maps(self) -> list[TensorMap]:
        return list(self._maps[0])

    @property
    def output_maps(self) -> list[TensorMap]:
        return list(self._maps[1])

    @property
    def optional(self) -> tuple[str, ...]:
        """Names of the input maps a sample may lack (they come with a presence flag)."""
        return tuple(self.spec.get("optional", ()))

    def encode(self, inputs: dict) -> dict:
        """``{tm.name: latent}`` of the maps found in ``inputs`` (keyed by input name; for a VAE: the mean)."""
        raise NotImplementedError(f"the {self.family} family does not encode")

    def encoder_of(self, tm) -> keras.Model:
        """A model from input map ``tm`` alone to its latent: :meth:`encode` traced on a symbolic input."""
        inputs = keras.Input(tm.shape, name=tm.input_name)
        return keras.Model(inputs, self.encode({tm.input_name: inputs})[tm.name], name=f"encoder_of_{tm.name}")

    def extra_encoders_of(self, tm) -> dict[str, keras.Model]:
        """``{name: model from tm's input}`` of the family's other codes, each written by infer_encoders as
        ``hidden_<tm>_<name>_<id>.tsv`` (a VAE's log-variances, a cVAE's background means); none by default."""
        return {}

    def decode(self, latent, tm) -> object:
        """The output map ``tm`` decoded from ``latent``."""
        raise ValueError(f"the {self.family} family has no decoders")

    @classmethod
    def options_from_args(cls, args) -> object:
        """What the family reads of the flags, checked (kept in ``Architecture.family_options``); None: nothing."""
        return None

    @classmethod
    def check_architecture(cls, architecture, input_tmaps, output_tmaps) -> None:
        """Refuse, before any work, an architecture this family cannot build (ValueError saying what to change)."""

    @classmethod
    def check_recompute(cls, architecture, input_tmaps) -> None:
        """Refuse, before any work, ``--recompute_encoders`` for an architecture whose encoders cannot be recomputed
        (ValueError saying what to change); see :meth:`recompute_encoders`."""
        raise ValueError(_no_encoders_to_recompute(cls.family))

    def recompute_encoders(self) -> None:
        """Make every encoder recompute its activations in the backward pass instead of keeping them
        (``--recompute_encoders``, :mod:`ml4ge.models.recompute`): less memory, one more forward pass of the
        encoders. The model's function, weights and saved files do not change.

        Raises:
            ValueError: the family has no separate encoders, or one of them changes state when called.
        """
        raise ValueError(_no_encoders_to_recompute(self.family))

    def training_callbacks(self, settings) -> list[keras.callbacks.Callback]:
        """Callbacks this family adds to training (none by default)."""
        return []

    def compile_for_training(self, output_tmaps, settings, jit_compile="auto", run_eagerly: bool = False):
        """Compile with each output's loss (``tm.loss``), weight and metrics and the settings' optimizer.

        Masked outputs get targets with the mask packed as extra channels (``tm.target``); their losses split it.
        ``jit_compile="auto"`` means no XLA on CPU (XLA is far slower there for 3-D convolutions).
        """
        from ml4ge.models.losses import get_loss

        output_tmaps = list(output_tmaps)
        self.compile(
            optimizer=settings.make_optimizer(),
            loss={tm.output_name: get_loss(tm.loss) for tm in output_tmaps},
            loss_weights={tm.output_name: float(tm.loss_weight) for tm in output_tmaps},
            metrics={tm.output_name: list(tm.metrics) for tm in output_tmaps},
            jit_compile=jit_compile,
            run_eagerly=run_eagerly,
        )
        return self

    def get_config(self) -> dict:
        return {"spec": self.spec, "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)


def _no_encoders_to_recompute(family: str) -> str:
    return (f"--recompute_encoders recomputes the encoders of the autoencoder family; the {family} family has no "
            "separate encoders to recompute: train without it.")


def family_of(model) -> str:
    """The family a loaded model belongs to (``autoencoder`` for a model saved without a spec)."""
    return getattr(model, "spec", {}).get("family", "autoencoder")
