"""The ``vae`` family (a Gaussian latent with reparameterised sampling and a scheduled KL weight) and ``rae`` (its
deterministic, regularised variant).

VAE: one input map -> its encoder block (``encode_<tm>``, any registered encoder) -> the Gaussian head
(activation, then ``latent_mean`` and ``latent_log_var`` dense layers of the latent size, the last
``--dense_layers``) -> a sample ``z = mean + exp(log_var / 2) * eps`` in training (the mean at inference) -> one
decoder block per output map (``decode_<tm>``). The loss is ``alpha * reconstruction + beta * KL``, the KL of the
posterior against N(0, I) summed over latent dimensions and averaged over the batch; ``beta`` is a non-trainable
variable that the family's :class:`~ml4ge.models.beta_schedules.BetaSchedule` callback sets every epoch.

RAE (Ghosh et al. 2020): no log-variance and no sampling, ``z = mean``; ``0.5 * ||z||^2`` takes the place of the KL
(weighted and scheduled the same way). The seed sampled in its RAE (REFERENCE_SEEDS.md C.4); this one does not.

The mean (and log-variance) are extra outputs of the model (``latent_mean``, ``latent_log_var``), so the loss reads
them from the forward pass; the outputs' compiled losses and metrics see only the decoded maps. :meth:`encode`
returns the mean, so ``--mode infer_encoders`` writes means. The training log has ``reconstruction_loss``,
``kl_loss`` (RAE: ``code_norm_loss``), unweighted, and ``beta``.

Example:
    >>> model = VAEModel.from_architecture(Architecture("vae", config=config, family_options=VAEConfig()),
    ...                                    [t1], [t1])
    >>> means = model.encode({t1.input_name: volumes})["t1"]
"""

from __future__ import annotations

import math
import types

import keras
from keras import ops

import ml4ge.models.conv  # noqa: F401  (registers the built-in blocks)
import ml4ge.models.dense  # noqa: F401
from ml4ge.models.beta_schedules import BetaSchedule
from ml4ge.models.blocks import Namer, after_layer
from ml4ge.models.config import ModelConfig
from ml4ge.models.family import FamilyModel, map_from_spec, map_spec
from ml4ge.models.registries import DECODERS, ENCODERS, FAMILIES
from ml4ge.models.vae_config import VAEConfig
from ml4ge.tensormap import TensorMap, keras_safe

MEAN, LOG_VAR = "latent_mean", "latent_log_var"  # the extra outputs (not map outputs: no "output_" prefix)


@keras.saving.register_keras_serializable(package="ml4ge")
class GaussianSample(keras.layers.Layer):
    """``mean + exp(log_var / 2) * eps`` with ``eps ~ N(0, I)`` in training; the mean at inference.

    Args:
        seed: seed of its own random stream (a variable, so saved and restored with the model).
    """

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        mean, log_var = inputs
        if not training:
            return mean
        eps = keras.random.normal(ops.shape(mean), dtype=mean.dtype, seed=self.seed_generator)
        return mean + ops.exp(0.5 * log_var) * eps

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def gaussian_kl(mean, log_var):
    """``KL(N(mean, exp(log_var)) || N(0, I))`` per sample, summed over the latent axis: ``[B, d] -> [B]``."""
    return -0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=-1)


def code_norm(code):
    """``0.5 * ||code||^2`` per sample: the RAE's penalty, ``[B, d] -> [B]``."""
    return 0.5 * ops.sum(ops.square(code), axis=-1)


def encoder_part(entry: dict, tm: TensorMap, config: ModelConfig, name: str | None = None) -> keras.Model:
    """The registered encoder block of ``entry`` as a model of its own: ``tm.shape -> embedding``."""
    inputs = keras.Input(tm.shape, name=tm.input_name)
    block = ENCODERS.get(entry["block"]).from_config(config)
    return keras.Model(inputs, block(inputs, tm), name=name or f"encode_{keras_safe(tm.name)}")


def decoder_part(entry: dict, tm: TensorMap, config: ModelConfig, latent_size: int) -> keras.Model:
    """The registered decoder block of ``entry`` as a model of its own: ``latent -> tm.shape``."""
    inputs = keras.Input((latent_size,), name=f"latent_{keras_safe(tm.name)}")
    block = DECODERS.get(entry["block"]).from_config(config)
    decoder = keras.Model(inputs, block(inputs, tm), name=f"decode_{keras_safe(tm.name)}")
    if tuple(decoder.output.shape[1:]) != tuple(tm.shape):
        raise ValueError(f"decoder block {entry['block']!r} gives {tuple(decoder.output.shape[1:])} for "
                         f"{tm.name!r}, not its shape {tm.shape}.")
    return decoder


def gaussian_head(embedding, config: ModelConfig, size: int, prefix: str = "", log_var: bool = True):
    """``(mean, log_var or None)`` of an embedding: activation, then two dense layers of ``size`` units."""
    hidden = after_layer(embedding, Namer(f"{prefix}gaussian"), 0, config.dense.activation)
    mean = keras.layers.Dense(size, name=f"{prefix}{MEAN}")(hidden)
    if not log_var:
        return mean, None
    return mean, keras.layers.Dense(size, name=f"{prefix}{LOG_VAR}")(hidden)


def first_block(names, registry, tm: TensorMap, config: ModelConfig, role: str) -> dict:
    """``{"block": name}`` of the first registered block in ``names`` that applies to ``tm``.

    Raises:
        ValueError: for a saved part file (these families build their blocks anew) or when none applies.
    """
    for name in names:
        if str(name).endswith(".keras"):
            raise ValueError(f"--{role}_blocks {name!r}: the variational families build registered blocks only; "
                             "give a block name.")
        if registry.get(name).from_config(config).can_apply(tm):
            return {"block": str(name)}
    raise ValueError(f"No {role} block in {list(names)} applies to TensorMap {tm.name!r} of shape {tm.shape}.")


def largest_output(output_tmaps) -> int:
    """Elements of the largest output map: the default reconstruction weight (a sum over voxels)."""
    return max(math.prod(tm.shape) for tm in output_tmaps)


def check_maps(family: str, architecture, input_tmaps, output_tmaps, inputs: int = 1) -> None:
    """Raises ValueError for what these families do not take: other than ``inputs`` input maps, optional maps."""
    if len(input_tmaps) != inputs or not output_tmaps:
        raise ValueError(f"the {family} family takes {inputs} input map(s) and at least one output map, got inputs "
                         f"{[tm.name for tm in input_tmaps]} and outputs {[tm.name for tm in output_tmaps]}.")
    if architecture.optional:
        raise ValueError(f"the {family} family has no optional inputs; leave out --optional_tensors.")


class VariationalFamily(FamilyModel):
    """What the VAE families and the cVAE families share: their options (the ``--alpha``/``--beta*`` flags, kept in
    the spec), decoders named by map, the map outputs that the compiled losses and metrics score, and the beta
    schedule's callback. Not a family itself (not registered)."""

    @classmethod
    def options_from_args(cls, args) -> VAEConfig:
        """What the family reads of the flags (checked: the schedule name and the ranges)."""
        from ml4ge.models.beta_schedules import BETA_SCHEDULES

        options = VAEConfig.from_args(args)
        BETA_SCHEDULES.get(options.schedule)
        return options

    @classmethod
    def check_architecture(cls, architecture, input_tmaps, output_tmaps) -> None:
        cls.spec_of(architecture, list(input_tmaps), list(output_tmaps))

    @property
    def options(self) -> VAEConfig:
        return VAEConfig.from_dict(self.spec["vae"])

    @property
    def decoders(self) -> types.MappingProxyType:
        """``{tm.name: decoder Model}`` from the latent code to ``tm.shape`` (saved as ``decoder_<tm>.keras``)."""
        return types.MappingProxyType({tm.name: self.get_layer(f"decode_{keras_safe(tm.name)}")
                                       for tm in self.output_maps})

    def decode(self, latent, tm):
        name = tm if isinstance(tm, str) else tm.name
        return self.decoders[name](latent, training=False)

    def decoded(self, y_pred: dict) -> dict:
        """The map outputs of a forward pass (what the compiled losses and metrics score)."""
        return {tm.output_name: y_pred[tm.output_name] for tm in self.output_maps}

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y, self.decoded(y_pred), sample_weight)

    def training_callbacks(self, settings) -> list[keras.callbacks.Callback]:
        """The beta schedule of the model's options over the run's ``settings.epochs``."""
        return [BetaSchedule(self.options, settings.epochs)]


@FAMILIES.register("vae")
@keras.saving.register_keras_serializable(package="ml4ge")
class VAEModel(VariationalFamily):
    """Encoder -> Gaussian head -> sample -> decoders, built from a spec (see :meth:`spec_of`).

    Args:
        spec: ``{"family", "inputs", "outputs", "encoder": {"block"}, "decoders": {tm name: {"block"}},
            "config": ModelConfig dict, "vae": VAEConfig dict}``.
        **kwargs: ``keras.Model`` arguments (name, trainable).
    """

    family = "vae"
    sampled = True  # RAE: False (no log-variance, no sampling)
    penalty_name = "kl_loss"

    @classmethod
    def spec_of(cls, architecture, input_tmaps, output_tmaps) -> dict:
        """The model's spec; raises ValueError for maps or blocks the family cannot build."""
        check_maps(cls.family, architecture, input_tmaps, output_tmaps)
        config, options = architecture.config, architecture.family_options or VAEConfig()
        if options.alpha is None:
            options = VAEConfig.from_dict({**options.to_dict(), "alpha": float(largest_output(output_tmaps))})
        tm = input_tmaps[0]
        return {"family": cls.family, "inputs": [map_spec(tm)], "outputs": [map_spec(m) for m in output_tmaps],
                "encoder": first_block(architecture.encoder_blocks, ENCODERS, tm, config, "encoder"),
                "decoders": {m.name: first_block(architecture.decoder_blocks, DECODERS, m, config, "decoder")
                             for m in output_tmaps},
                "config": config.to_dict(), "vae": options.to_dict()}

    @classmethod
    def from_architecture(cls, architecture, input_tmaps, output_tmaps):
        return cls(cls.spec_of(architecture, list(input_tmaps), list(output_tmaps)))

    def __init__(self, spec: dict, **kwargs):
        # === Layers ===
        config, options = ModelConfig.from_dict(spec["config"]), VAEConfig.from_dict(spec["vae"])
        source = map_from_spec(spec["inputs"][0])
        targets = [map_from_spec(m) for m in spec["outputs"]]
        encoder = encoder_part(spec["encoder"], source, config)
        decoders = [decoder_part(spec["decoders"][tm.name], tm, config, config.latent_size) for tm in targets]
        # === Functional graph ===
        inputs = keras.Input(source.shape, name=source.input_name)
        mean, log_var = gaussian_head(encoder(inputs), config, config.latent_size, log_var=self.sampled)
        code = GaussianSample(name="sample")([mean, log_var]) if self.sampled else mean
        outputs = {tm.output_name: decoder(code) for tm, decoder in zip(targets, decoders)}
        outputs[MEAN] = mean
        if self.sampled:
            outputs[LOG_VAR] = log_var
        kwargs.setdefault("name", f"ml4ge_{self.family}")
        super().__init__(inputs={source.input_name: inputs}, outputs=outputs, **kwargs)
        # === Config and training state ===
        self.set_spec(spec)
        # The posterior alone (input -> mean, log_var), sharing the layers; set past Keras' tracking (not a part).
        posterior = {MEAN: mean, LOG_VAR: log_var} if self.sampled else {MEAN: mean}
        object.__setattr__(self, "_posterior", keras.Model(inputs, posterior, name="posterior"))
        self.alpha = float(options.alpha if options.alpha is not None else largest_output(targets))
        self.beta = keras.Variable(options.beta, trainable=False, dtype="float32", name="beta")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.penalty_tracker = keras.metrics.Mean(name=self.penalty_name)

    # Parts -------------------------------------------------------------------------------------------------
    @property
    def latent_size(self) -> int:
        return int(self.get_layer(MEAN).units)

    def encode(self, inputs: dict) -> dict:
        """``{tm.name: posterior mean}`` of the input map when ``inputs`` holds it."""
        return self._posterior_of(inputs, MEAN)

    def encode_log_var(self, inputs: dict) -> dict:
        """``{tm.name: posterior log-variance}`` (VAE only)."""
        return self._posterior_of(inputs, LOG_VAR)

    def extra_encoders_of(self, tm) -> dict[str, keras.Model]:
        """``{"log_var": input -> posterior log-variance}`` (VAE; the RAE has none)."""
        if not self.sampled:
            return {}
        inputs = keras.Input(tm.shape, name=tm.input_name)
        return {"log_var": keras.Model(inputs, self.encode_log_var({tm.input_name: inputs})[tm.name],
                                       name=f"log_var_of_{keras_safe(tm.name)}")}

    def _posterior_of(self, inputs: dict, part: str) -> dict:
        tm = self.input_maps[0]
        return {tm.name: self._posterior(inputs[tm.input_name], training=False)[part]} if tm.input_name in inputs \
            else {}

    # Training ----------------------------------------------------------------------------------------------
    def penalty(self, y_pred: dict):
        """The per-sample latent penalty averaged over the batch: KL (VAE) or 0.5 ||z||^2 (RAE)."""
        if self.sampled:
            return ops.mean(gaussian_kl(y_pred[MEAN], y_pred[LOG_VAR]))
        return ops.mean(code_norm(y_pred[MEAN]))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        reconstruction = super().compute_loss(x, y, self.decoded(y_pred), sample_weight, training)
        penalty = self.penalty(y_pred)
        self.reconstruction_tracker.update_state(reconstruction)
        self.penalty_tracker.update_state(penalty)
        return self.alpha * reconstruction + ops.cast(self.beta, penalty.dtype) * penalty

    @property
    def metrics(self):
        return [*super().metrics, self.reconstruction_tracker, self.penalty_tracker]


@FAMILIES.register("rae")
@keras.saving.register_keras_serializable(package="ml4ge")
class RAEModel(VAEModel):
    """The regularised autoencoder: ``z = mean`` (no sampling), ``0.5 ||z||^2`` in place of the KL."""

    family = "rae"
    sampled = False
    penalty_name = "code_norm_loss"
