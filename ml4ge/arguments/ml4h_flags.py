"""The flags of ml4h parity (docs/ml4h_differences.md): the structure and semantics ml4h's flags have there,
and ml4h flags that ml4ge answers with what to use instead. They sit in the ``model``, ``training`` and
``inference and comparison`` groups of ``--help``.
"""

from __future__ import annotations

from ml4ge.arguments.flag import INFERENCE, MODEL, TRAINING, Flag
from ml4ge.arguments.model_flags import CONV
from ml4ge.models.config import CONV_STYLES

ML4H_FLAGS: dict[str, Flag] = {
    "conv_style": Flag(MODEL, CONV.style, "conv_encode/conv_decode structure: ml4h (ml4h's residual stem, DenseNet "
                                          "stages of --block_size concatenating convolutions, activated embedding, "
                                          "ml4h's decoder) or plain (plain conv stages, linear embedding, mirrored "
                                          "decoder: UDIP's preset and the demo).", choices=CONV_STYLES),
    "patience_style": Flag(TRAINING, "ml4h", "What --patience means without a --model_preset: ml4h (early stopping "
                                             "after 3 x --patience epochs without a lower val_loss, learning rate "
                                             "halved after --patience, as ml4h) or ml4ge (stop after --patience, "
                                             "--lr_schedule's own plateau).", choices=("ml4h", "ml4ge")),
    "save_last_model": Flag(TRAINING, False, "train: keep the last epoch's weights instead of the best "
                                             "validation epoch's (ml4h's --save_last_model)."),
    "learning_rate_schedule": Flag(TRAINING, None, "ml4h's flag, refused: use --lr_schedule (plateau, step, cosine, "
                                                   "constant)."),
    "model_layers": Flag(MODEL, None, "ml4h's flag, refused: use --model_file to fine-tune a trained model, or "
                                      "--encoder_blocks encoder_<tmap>.keras to start from trained encoders."),
    "freeze_model_layers": Flag(MODEL, False, "ml4h's flag (with --model_layers), refused: see --model_layers."),
    "hidden_layer": Flag(INFERENCE, "embed", "infer_hidden (alias of infer_encoders): embed or embed_<tmap>, the "
                                            "encoders' outputs (ml4h's per-map embed layers); other layers are "
                                            "refused."),
}
