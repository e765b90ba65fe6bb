"""Recomputing an encoder's activations in the backward pass instead of keeping them (``--recompute_encoders``).

An encoder's activations live longest in an autoencoder's training step: the forward pass makes them first and
the backward pass needs them last, so they are held through the whole decoder, forward and backward, where the
step's memory peaks. Wrapped by :func:`recompute_in_backward`, an encoder keeps only its input; when its gradient
is due it runs again under the tape (``keras.remat``: ``tf.recompute_grad`` with TensorFlow). One more forward pass of
the encoders, a few per cent of a convolutional autoencoder's step, buys the memory of all their activations.

Recomputing is exact only for a part without state a call changes: batch normalisation updates its moving
statistics and dropout draws a new mask on every call, so a second run in the backward pass would update them
twice or differentiate another mask. Such parts are refused (:func:`state_of`).

The wrapping lives on the part object only (not in its config): saved files and models loaded from them are
unchanged. It overrides the part's ``call`` rather than using ``keras.RematScope``, whose wrapper passes the call's
keyword arguments (``training``) to ``tf.custom_gradient``, which TensorFlow refuses in graph mode
(keras-team/keras#21207).
"""

from __future__ import annotations

import keras


def state_of(part: keras.Layer) -> list[str]:
    """Names of ``part``'s layers whose call changes their state: batch normalisation (its moving statistics) and
    layers that draw random numbers (dropout, noise: their seed state). Constant non-trainable variables, such as a
    Normalization layer's, do not count."""
    return [layer.name for layer in part._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization) or getattr(layer, "_seed_generators", None)]


def recompute_in_backward(part: keras.Model) -> None:
    """Make ``part`` keep only its input for the backward pass and run again there (see the module docstring).

    Raises:
        ValueError: from :func:`check_recomputable`.
    """
    check_recomputable(part)
    call = part.call

    def recomputing_call(inputs, training=None, mask=None, **kwargs):
        return keras.remat(lambda x: call(x, training=training, mask=mask, **kwargs))(inputs)

    part.call = recomputing_call


def check_recomputable(part: keras.Layer) -> None:
    """Refuse a ``part`` whose call changes state (:func:`state_of`) with a ValueError saying what to change."""
    state = state_of(part)
    if state:
        raise ValueError(f"--recompute_encoders cannot recompute {part.name}: its layers {state} change state on "
                         "every call (batch normalisation, dropout or noise), so a second run in the backward pass "
                         "would be another function. Train without --recompute_encoders, or without those layers in "
                         "the encoder (--conv_normalize, --conv_regularize, --dense_normalize, --dense_regularize).")
