"""Losses: masked reconstruction error (UDIP), pair losses between embeddings, and loss lookup by name.

Everything here is written with ``keras.ops`` so that it runs on the TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

import keras
from keras import ops

from ml4ge.registry import Registry

# Smallest squared norm used when L2-normalising (as Keras' ``epsilon``); keeps zero vectors finite.
_NORM_EPSILON = 1e-7
# Cosines are clipped this far inside [-1, 1] so that the gradient of arccos stays finite for identical vectors.
_COSINE_MARGIN = 1e-7
# Smallest squared distance under the square root of the Euclidean pair loss (gradient of sqrt at 0 is infinite).
_DISTANCE_EPSILON = 1e-12


def _split_values_and_mask(y_true, y_pred):
    """Split a packed target ``[..., 2C]`` into values ``[..., C]`` and mask ``[..., C]`` (C = y_pred channels).

    Raises:
        ValueError: if the static channel count of ``y_true`` is not twice that of ``y_pred``.
    """
    channels = y_pred.shape[-1]
    if y_true.shape[-1] is not None and channels is not None and y_true.shape[-1] != 2 * channels:
        raise ValueError(
            f"masked_mse expects targets with the mask packed after the values on the last axis "
            f"({2 * channels} channels for a prediction with {channels}), but received target shape "
            f"{tuple(y_true.shape)} and prediction shape {tuple(y_pred.shape)}. Build targets with "
            f"TensorMap.target(array, mask) or use the loss 'mse' for an unmasked output."
        )
    return y_true[..., :channels], y_true[..., channels:]


def _per_sample_sums(x):
    """Sum of all but the first (batch) axis: ``[B, ...] -> [B]``."""
    return ops.sum(ops.reshape(x, (ops.shape(x)[0], -1)), axis=-1)


def masked_squared_error_sums(y_true, y_pred):
    """Per-sample sums of squared errors inside the mask, and per-sample mask sizes.

    Args:
        y_true: ``[B, ..., 2C]`` values then mask on the last axis.
        y_pred: ``[B, ..., C]`` predictions.

    Returns:
        ``(sse, count)``, two ``[B]`` tensors: ``sum(mask * (values - y_pred)^2)`` and ``sum(mask)`` per sample.
    """
    values, mask = _split_values_and_mask(y_true, y_pred)
    mask = ops.cast(mask, y_pred.dtype)
    values = ops.cast(values, y_pred.dtype)
    return _per_sample_sums(mask * ops.square(values - y_pred)), _per_sample_sums(mask)


@keras.saving.register_keras_serializable(package="ml4ge")
class MaskedMeanSquaredError(keras.losses.Loss):
    """Mean squared error over the mask voxels of the whole batch, as UDIP defines it.

    ``L = sum_b sum_v m_bv (x_bv - x̂_bv)^2 / sum_b sum_v m_bv``: a global mean over all in-mask voxels of the batch,
    not a mean of per-sample means. Keras reduces the per-sample values a loss returns with a mean over the batch,
    so ``call`` returns ``B * sse_b / sum(mask)``, whose batch mean is exactly ``L`` for any batch size, including
    a partial last batch (B is read from the tensor at run time). With the default reduction, sample weights
    scale each sample's share. A batch whose mask is all zero gives 0 (not NaN). Under a distribution strategy the
    global mean is taken per replica batch.

    The target packs the mask after the values on the last axis (see ``TensorMap.target``):
    ``values = y_true[..., :C]``, ``mask = y_true[..., C:]`` with C the number of channels of ``y_pred``.

    Example:
        >>> loss = MaskedMeanSquaredError()
        >>> value = loss(np.concatenate([target, mask], -1), prediction)
    """

    def __init__(self, name="masked_mse", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        """Per-sample values ``B * sse_b / total_mask`` whose batch mean is the global masked MSE."""
        sse, count = masked_squared_error_sums(y_true, y_pred)
        batch_size = ops.cast(ops.shape(sse)[0], sse.dtype)
        return batch_size * sse / ops.maximum(ops.sum(count), 1.0)


# ---------------------------------------------------------------------------------------------------- pair losses


def l2_normalize(x):
    """``x / sqrt(max(sum(x^2), 1e-7))`` along the last axis (ml4h's ``l2_norm``)."""
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), _NORM_EPSILON))


def _as_float32(a, b):
    # Softmaxes and arccos in bfloat16 lose too much precision; pair losses are always computed in float32.
    return ops.cast(a, "float32"), ops.cast(b, "float32")


def _weighted_mean(values, weights):
    """``mean(values)``, or ``sum(w * values) / max(sum(w), 1)`` over rows with per-row ``weights``."""
    if weights is None:
        return ops.mean(values)
    weights = ops.reshape(ops.cast(weights, "float32"), (-1,))
    return ops.sum(weights * values) / ops.maximum(ops.sum(weights), 1.0)


# Added to the logits of a pair member that is absent so that it is never a candidate of the softmax.
_ABSENT_LOGIT = 1e9


def info_nce(a, b, temperature=0.07, weights=None):
    """Symmetric InfoNCE (CLIP) between paired embeddings.

    ``logits = l2n(a) @ l2n(b)^T / temperature``; the loss is the mean of the cross-entropy of each row's softmax
    against the diagonal (a_i should pick b_i among the batch) and of each column's softmax against the diagonal
    (b_i should pick a_i): ``-(mean_i log softmax_row(logits)_ii + mean_i log softmax_col(logits)_ii) / 2``.
    The batch size is read at run time, so any batch size works, including a partial last batch and B = 1
    (where the loss is 0: the only candidate is the match).

    How it differs from ml4h's ``contrastive_difference``: ``docs/ml4h_differences.md``.

    Args:
        a: ``[B, D]`` embeddings of the first modality.
        b: ``[B, D]`` embeddings of the second modality, row i paired with row i of ``a``.
        temperature: positive scalar (float or tensor) dividing the cosine similarities.
        weights: optional ``[B]`` or ``[B, 1]`` 0/1 flags of the complete pairs (both members present): only they
            are scored, and absent members are no candidates of any softmax.

    Returns:
        A scalar float32 tensor.

    Example:
        >>> info_nce(np.eye(4, 8), np.eye(4, 8), 0.07)  # matched pairs, near 0
    """
    a, b = _as_float32(a, b)
    logits = ops.matmul(l2_normalize(a), ops.transpose(l2_normalize(b))) / ops.cast(temperature, "float32")
    if weights is None:
        row_log_probs = ops.diagonal(ops.log_softmax(logits, axis=1))
        column_log_probs = ops.diagonal(ops.log_softmax(logits, axis=0))
        return -0.5 * (ops.mean(row_log_probs) + ops.mean(column_log_probs))
    absent = _ABSENT_LOGIT * (1.0 - ops.reshape(ops.cast(weights, "float32"), (-1,)))
    row_log_probs = ops.diagonal(ops.log_softmax(logits - absent[None, :], axis=1))
    column_log_probs = ops.diagonal(ops.log_softmax(logits - absent[:, None], axis=0))
    return -0.5 * (_weighted_mean(row_log_probs, weights) + _weighted_mean(column_log_probs, weights))


def cosine_pair_loss(a, b, weights=None):
    """Mean angle in radians between paired embeddings: ``mean_i arccos(clip(cos(a_i, b_i)))``.

    The cosine is clipped to ``[-1 + 1e-7, 1 - 1e-7]``: the gradient of arccos is infinite at ±1, so identical
    embeddings would give NaN gradients. The clip adds at most about 5e-4 rad to a perfectly aligned pair.

    Args:
        a, b: ``[B, D]`` paired embeddings.
        weights: optional per-row 0/1 flags of the complete pairs; only they are averaged.

    Returns:
        A scalar float32 tensor in ``[0, pi]``.
    """
    a, b = _as_float32(a, b)
    cosine = ops.sum(l2_normalize(a) * l2_normalize(b), axis=-1)
    return _weighted_mean(ops.arccos(ops.clip(cosine, -1.0 + _COSINE_MARGIN, 1.0 - _COSINE_MARGIN)), weights)


def euclid_pair_loss(a, b, weights=None):
    """Mean per-sample Euclidean distance between paired embeddings: ``mean_i ||a_i - b_i||``.

    A per-sample mean, so it does not grow with the batch size. The squared distance is floored at 1e-12 so that
    identical pairs have a finite (zero) gradient.

    Args:
        a, b: ``[B, D]`` paired embeddings.
        weights: optional per-row 0/1 flags of the complete pairs; only they are averaged.

    Returns:
        A scalar float32 tensor.
    """
    a, b = _as_float32(a, b)
    squared = ops.sum(ops.square(a - b), axis=-1)
    return _weighted_mean(ops.sqrt(ops.maximum(squared, _DISTANCE_EPSILON)), weights)


# Keras' categorical cross-entropy clips its y_pred to [1e-7, 1 - 1e-7]; ml4h's swapped call puts the identity there.
_KERAS_EPSILON = 1e-7


def contrastive_ml4h(a, b, log_scale=0.0, weights=None):
    """ml4h's ``contrastive_difference`` as the DropFuse and registration papers trained with it (``--pair_loss
    contrastive_ml4h``): for the reproduction of published numbers, not for new work (use ``contrastive``).

    ml4h scales the cosine similarities by ``exp(log_scale)`` (a learned, unclamped weight starting at 0), takes
    the row softmaxes ``P`` of ``l2n(a) @ l2n(b)^T`` and of its transpose, and passes them to Keras'
    ``categorical_crossentropy`` as ``y_true`` with the identity as ``y_pred``: swapped. With the identity clipped to
    ``[1e-7, 1 - 1e-7]`` each row gives ``-P_ii log(1 - 1e-7) - (1 - P_ii) log(1e-7) ~ 16.12 (1 - P_ii)``, a linear
    penalty on the diagonal softmax mass (bounded, its gradient vanishing as ``P_ii -> 0``), not ``-log P_ii``. The
    value is the mean over rows of both directions, as the reference measured (11.7766 on its B = 4, D = 8 check).

    Batch size: ml4h builds the identity once from ``--batch_size``, so a batch of another size fails there (its
    loader drops the partial last batch). Here the identity has the batch's own size: full batches give ml4h's
    value, and a partial batch is scored instead of failing. The value depends on the batch size (at chance
    ``P_ii = 1/B``, so about ``16.12 (1 - 1/B)``): compare runs at the same ``--batch_size``.

    Args:
        a, b: ``[B, D]`` paired embeddings.
        log_scale: ml4h's ``temperature`` weight (the logits are multiplied by its exponential).
        weights: optional per-row 0/1 flags of complete pairs (ml4ge's optional maps; ml4h has none): only they
            are averaged.

    Returns:
        A scalar float32 tensor.
    """
    a, b = _as_float32(a, b)
    scale = ops.exp(ops.cast(ops.reshape(log_scale, ()), "float32"))
    similarity = ops.matmul(l2_normalize(a), ops.transpose(l2_normalize(b))) * scale
    log_identity = ops.log(ops.clip(ops.eye(ops.shape(a)[0], dtype="float32"), _KERAS_EPSILON, 1 - _KERAS_EPSILON))

    def swapped_cross_entropy(logits):
        return -ops.sum(ops.softmax(logits, axis=-1) * log_identity, axis=-1)

    rows = swapped_cross_entropy(similarity) + swapped_cross_entropy(ops.transpose(similarity))
    return _weighted_mean(rows / 2.0, weights)


PAIR_LOSSES: Registry = Registry("pair loss")
PAIR_LOSSES.register("contrastive", info_nce)
PAIR_LOSSES.register("contrastive_ml4h", contrastive_ml4h)
PAIR_LOSSES.register("cosine", cosine_pair_loss)
PAIR_LOSSES.register("euclid", euclid_pair_loss)

# ---------------------------------------------------------------------------------------------------- loss lookup

LOSSES: Registry = Registry("loss")
LOSSES.register("mse", keras.losses.MeanSquaredError)
LOSSES.register("mae", keras.losses.MeanAbsoluteError)
LOSSES.register("masked_mse", MaskedMeanSquaredError)
LOSSES.register("categorical_crossentropy", keras.losses.CategoricalCrossentropy)
LOSSES.register("binary_crossentropy", keras.losses.BinaryCrossentropy)
LOSSES.register("sparse_categorical_crossentropy", keras.losses.SparseCategoricalCrossentropy)
LOSSES.register("logcosh", keras.losses.LogCosh)


def get_loss(name_or_loss):
    """A Keras loss object from a registered name; a ``keras.losses.Loss`` passes through unchanged.

    Args:
        name_or_loss: a name in :data:`LOSSES` ('mse', 'masked_mse', ...) or a ``keras.losses.Loss``.

    Returns:
        A new ``keras.losses.Loss`` for a name, or the given object.

    Raises:
        UnknownNameError: for an unregistered name, listing the closest registered names.
        TypeError: for anything that is neither a string nor a Loss.
    """
    if isinstance(name_or_loss, keras.losses.Loss):
        return name_or_loss
    if isinstance(name_or_loss, str):
        return LOSSES.get(name_or_loss)()
    raise TypeError(
        f"Expected a loss name ({', '.join(LOSSES.names())}) or a keras.losses.Loss, "
        f"received {type(name_or_loss).__name__}: {name_or_loss!r}."
    )
