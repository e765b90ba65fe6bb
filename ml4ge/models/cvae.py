"""The ``cvae`` family: a contrastive VAE with a salient and a background code and a total-correlation
discriminator that really trains (Abid & Zou 2019; Aglinskas et al. 2022; REFERENCE_SEEDS.md C.3-C.4).

Parts: the salient encoder S and the background encoder Z (the same encoder block, separate weights), each with a
Gaussian head (``salient_size`` and ``background_size`` units), one decoder per output map on ``[s, z]``, and the
discriminator D (a dense layer of ``s + z`` units with the hidden activation, then one logit) on ``[s, z]``.

Batches hold target samples in their first half and background samples in their second
(:mod:`ml4ge.models.cvae_data`). Targets reconstruct from ``[s, z]``, background samples from ``[0, z]``; the
reconstruction is scored against the batch's own rows (the seed scored target reconstructions against the background
batch). Per batch of n target and n background rows, the encoders and decoder minimise

    alpha * reconstruction + beta * (KL(s_tg) + KL(z_tg) + KL(z_bg)) + gamma * L_TC,   L_TC = mean logit D(v)

with ``v = [s_tg, z_tg]`` (the sampled codes), each KL summed over dimensions and averaged over the n rows, and the
reconstruction the outputs' compiled losses over all 2n rows. Then D alone takes a step of its own optimizer on

    L_D = mean[-log D(v) - log(1 - D(v_bar))],   v_bar = [s_tg, z_tg swapped between the two halves of the rows]

(with an odd n, row 0 keeps its pair, as the seed). The TC gradient reaches the encoders only (D's variables are
not in the first step), and L_D's gradient reaches D only (the codes are constants there): one joint optimizer made
the seed's discriminator fight its own adversarial term (its L_D stuck at 2 ln 2). D is one hidden layer, not the
seed's single dense unit: a linear logit of [s, z] cannot tell joint samples from the product of marginals, which
have the same marginals. With ``gamma = 0`` D is not trained. ``encode`` returns the salient mean;
``encode_background`` the background mean. The training log has ``reconstruction_loss``, ``kl_loss``, ``tc_loss``,
``discriminator_loss``, ``d_joint`` and ``d_marginals`` (mean D(v) and D(v_bar)) and ``beta``.

Example:
    >>> model = CVAEModel.from_architecture(Architecture("cvae", config=config, family_options=VAEConfig()),
    ...                                     [t1], [t1])
"""

from __future__ import annotations

import keras
from keras import ops

from ml4ge.models.config import ModelConfig
from ml4ge.models.family import map_from_spec
from ml4ge.models.registries import FAMILIES
from ml4ge.models.vae import (
    LOG_VAR,
    MEAN,
    GaussianSample,
    VAEModel,
    VariationalFamily,
    code_norm,
    decoder_part,
    encoder_part,
    gaussian_head,
    gaussian_kl,
)
from ml4ge.models.vae_config import VAEConfig
from ml4ge.tensormap import keras_safe

SALIENT, BACKGROUND = "salient_", "background_"
TRACKED = ("loss", "reconstruction_loss", "kl_loss", "tc_loss", "discriminator_loss", "d_joint", "d_marginals")


def half_swap(n):
    """Row order that swaps the two halves of ``n`` rows (with an odd ``n``, row 0 stays): a permutation."""
    odd = n % 2
    half = n // 2
    return ops.concatenate([ops.arange(0, odd), ops.arange(odd + half, n), ops.arange(odd, odd + half)])


def product_of_marginals(s, z):
    """``[s, z]`` with ``z``'s rows swapped between the batch halves: s keeps its rows, the s-z pairs are broken."""
    return ops.concatenate([s, ops.take(z, half_swap(ops.shape(z)[0]), axis=0)], axis=-1)


def discriminator_losses(joint_logits, marginal_logits):
    """``(L_TC, L_D)``: the mean logit of D on joint samples (log D/(1-D)), and D's cross-entropy."""
    tc = ops.mean(joint_logits)
    d = ops.mean(ops.softplus(-joint_logits)) + ops.mean(ops.softplus(marginal_logits))
    return tc, d


@FAMILIES.register("cvae")
@keras.saving.register_keras_serializable(package="ml4ge")
class CVAEModel(VariationalFamily):
    """Salient and background encoders, a shared decoder and a TC discriminator, built from a spec.

    Args:
        spec: as :class:`~ml4ge.models.vae.VAEModel`'s, with ``"family": "cvae"``.
        **kwargs: ``keras.Model`` arguments (name, trainable).
    """

    family = "cvae"
    groups = True  # trains on target and background samples, half of every batch each
    sampled = True

    @classmethod
    def spec_of(cls, architecture, input_tmaps, output_tmaps) -> dict:
        """The VAE's spec (one input, registered blocks, the options) under this family's name."""
        return {**VAEModel.spec_of(architecture, input_tmaps, output_tmaps), "family": cls.family}

    @classmethod
    def from_architecture(cls, architecture, input_tmaps, output_tmaps):
        return cls(cls.spec_of(architecture, list(input_tmaps), list(output_tmaps)))

    def __init__(self, spec: dict, **kwargs):
        # === Layers ===
        config, options = ModelConfig.from_dict(spec["config"]), VAEConfig.from_dict(spec["vae"])
        source = map_from_spec(spec["inputs"][0])
        targets = [map_from_spec(m) for m in spec["outputs"]]
        sizes = {SALIENT: options.salient_size, BACKGROUND: options.background_size}
        encoders = {prefix: encoder_part(spec["encoder"], source, config, f"encode_{prefix}{keras_safe(source.name)}")
                    for prefix in sizes}
        latent = options.salient_size + options.background_size
        decoders = [decoder_part(spec["decoders"][tm.name], tm, config, latent) for tm in targets]
        # === Functional graph (the target path: [s, z] -> decoders) ===
        inputs = keras.Input(source.shape, name=source.input_name)
        outputs, codes, posteriors = {}, [], {}
        for prefix, size in sizes.items():
            mean, log_var = gaussian_head(encoders[prefix](inputs), config, size, prefix, log_var=self.sampled)
            posteriors[prefix] = {MEAN: mean, LOG_VAR: log_var} if self.sampled else {MEAN: mean}
            codes.append(GaussianSample(name=f"{prefix}sample")([mean, log_var]) if self.sampled else mean)
            outputs |= {f"{prefix}{key}": value for key, value in posteriors[prefix].items()}
        joined = keras.layers.Concatenate(name="codes")(codes)
        outputs |= {tm.output_name: decoder(joined) for tm, decoder in zip(targets, decoders)}
        kwargs.setdefault("name", f"ml4ge_{self.family}")
        super().__init__(inputs={source.input_name: inputs}, outputs=outputs, **kwargs)
        # === Config and training state ===
        self.set_spec(spec)
        for prefix, posterior in posteriors.items():  # each posterior alone, sharing the layers (not parts)
            object.__setattr__(self, f"_{prefix}posterior", keras.Model(inputs, posterior, name=f"{prefix}posterior"))
        self.alpha = float(options.alpha)
        self.gamma = float(options.gamma)
        self.beta = keras.Variable(options.beta, trainable=False, dtype="float32", name="beta")
        self.discriminator = keras.Sequential(
            [keras.Input((latent,)), keras.layers.Dense(latent, activation="relu", name="tc_hidden"),
             keras.layers.Dense(1, name="tc_logit")], name="tc_discriminator")
        self.trackers = [keras.metrics.Mean(name=name) for name in TRACKED]

    # Parts -------------------------------------------------------------------------------------------------
    @property
    def latent_size(self) -> int:
        return self.options.salient_size

    def encode(self, inputs: dict) -> dict:
        """``{tm.name: salient mean}`` of the input map when ``inputs`` holds it."""
        return self._posterior_of(inputs, SALIENT)

    def encode_background(self, inputs: dict) -> dict:
        """``{tm.name: background mean}`` of the input map when ``inputs`` holds it."""
        return self._posterior_of(inputs, BACKGROUND)

    def extra_encoders_of(self, tm) -> dict[str, keras.Model]:
        """``{"background": input -> background mean}``: infer_encoders writes it beside the salient means."""
        inputs = keras.Input(tm.shape, name=tm.input_name)
        return {"background": keras.Model(inputs, self.encode_background({tm.input_name: inputs})[tm.name],
                                          name=f"background_of_{keras_safe(tm.name)}")}

    def _posterior_of(self, inputs: dict, prefix: str) -> dict:
        tm = self.input_maps[0]
        if tm.input_name not in inputs:
            return {}
        return {tm.name: getattr(self, f"_{prefix}posterior")(inputs[tm.input_name], training=False)[MEAN]}

    # Training ----------------------------------------------------------------------------------------------
    def compile_for_training(self, output_tmaps, settings, jit_compile="auto", run_eagerly: bool = False):
        """The outputs' losses and the settings' optimizer for encoders and decoders, and a second optimizer of
        the same kind for the discriminator; both built now, so a resumed run restores both states (the first over
        all trainable variables, as Keras builds it when it loads a model; it never steps the discriminator's)."""
        super().compile_for_training(output_tmaps, settings, jit_compile, run_eagerly)
        self.optimizer.build(self.trainable_variables)
        self.discriminator_optimizer = settings.make_optimizer()
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)
        return self

    def autoencoder_variables(self) -> list:
        """Trainable variables of the encoders, heads and decoders (not the discriminator's)."""
        excluded = {id(v) for v in self.discriminator.trainable_variables}
        return [v for v in self.trainable_variables if id(v) not in excluded]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The outputs' compiled losses over all rows (the reconstruction)."""
        return super().compute_loss(x, y, self.decoded(y_pred), sample_weight, training)

    def codes(self, image, training: bool) -> dict:
        """Posterior parameters and codes of a half-and-half batch: ``s`` of the target rows, ``z`` of all rows."""
        n = ops.shape(image)[0] // 2
        salient = self._salient_posterior(image[:n], training=training)
        background = self._background_posterior(image, training=training)
        s, z = (self._code(posterior, f"{prefix}sample", training)
                for posterior, prefix in ((salient, SALIENT), (background, BACKGROUND)))
        return {"n": n, "salient": salient, "background": background, "s": s, "z": z}

    def _code(self, posterior, sampler: str, training: bool):
        if not self.sampled:
            return posterior[MEAN]
        return self.get_layer(sampler)([posterior[MEAN], posterior[LOG_VAR]], training=training)

    def penalty(self, posterior, rows=None):
        """KL (RAE: 0.5 ||mean||^2) per sample of ``posterior``'s rows ``rows`` (a slice), averaged."""
        mean = posterior[MEAN] if rows is None else posterior[MEAN][rows]
        if not self.sampled:
            return ops.mean(code_norm(mean))
        log_var = posterior[LOG_VAR] if rows is None else posterior[LOG_VAR][rows]
        return ops.mean(gaussian_kl(mean, log_var))

    def losses_of(self, x, y, sample_weight=None, training: bool = True) -> dict:
        """Every term of a half-and-half batch ``x`` (its targets ``y``), and the joint and marginal samples."""
        image = x[self.input_maps[0].input_name]
        c = self.codes(image, training)
        n, s, z = c["n"], c["s"], c["z"]
        salient = ops.concatenate([s, ops.zeros((ops.shape(z)[0] - n, ops.shape(s)[1]), s.dtype)], axis=0)
        joined = ops.concatenate([salient, z], axis=-1)  # targets from [s, z], background rows from [0, z]
        decoded = {tm.output_name: self.decoders[tm.name](joined, training=training) for tm in self.output_maps}
        reconstruction = super().compute_loss(x, y, decoded, sample_weight, training)
        kl = (self.penalty(c["salient"]) + self.penalty(c["background"], slice(None, n))
              + self.penalty(c["background"], slice(n, None)))
        joint = ops.concatenate([s, z[:n]], axis=-1)
        marginals = product_of_marginals(s, z[:n])
        tc = ops.mean(self.discriminator(joint, training=False))
        total = self.alpha * reconstruction + ops.cast(self.beta, kl.dtype) * kl + self.gamma * tc
        return {"loss": total, "reconstruction_loss": reconstruction, "kl_loss": kl, "tc_loss": tc,
                "joint": joint, "marginals": marginals, "decoded": decoded}

    def discriminator_terms(self, joint, marginals, training: bool) -> dict:
        joint_logits = self.discriminator(ops.stop_gradient(joint), training=training)
        marginal_logits = self.discriminator(ops.stop_gradient(marginals), training=training)
        _, d_loss = discriminator_losses(joint_logits, marginal_logits)
        return {"discriminator_loss": d_loss, "d_joint": ops.mean(ops.sigmoid(joint_logits)),
                "d_marginals": ops.mean(ops.sigmoid(marginal_logits))}

    def train_step(self, data):
        import tensorflow as tf  # the two gradient steps are written for the TensorFlow backend

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.autoencoder_variables()
        with tf.GradientTape() as tape:
            terms = self.losses_of(x, y, sample_weight, training=True)
        self.optimizer.apply_gradients(zip(tape.gradient(terms["loss"], variables), variables))
        discriminator = self.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            critic = self.discriminator_terms(terms["joint"], terms["marginals"], training=True)
        if self.gamma > 0:
            self.discriminator_optimizer.apply_gradients(
                zip(tape.gradient(critic["discriminator_loss"], discriminator), discriminator))
        return self.track({**terms, **critic})

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        terms = self.losses_of(x, y, sample_weight, training=False)
        return self.track({**terms, **self.discriminator_terms(terms["joint"], terms["marginals"], False)})

    def track(self, terms: dict) -> dict:
        for tracker in self.trackers:
            tracker.update_state(terms[tracker.name])
        return {tracker.name: tracker.result() for tracker in self.trackers}

    @property
    def metrics(self):
        return list(self.trackers)


@FAMILIES.register("cvae_rae")
@keras.saving.register_keras_serializable(package="ml4ge")
class CRAEModel(CVAEModel):
    """The cvae with regularised codes: ``s`` and ``z`` are the means (no sampling), ``0.5 ||code||^2`` in place of
    each KL term (the seed's ``--rae 1`` still sampled)."""

    family = "cvae_rae"
    sampled = False
