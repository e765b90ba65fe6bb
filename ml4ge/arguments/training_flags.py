"""The flags of fitting, ``training`` in ``--help``: batches, epochs, stopping, optimizer and learning-rate
schedule (defaults from :mod:`ml4ge.training_settings`), distribution and precision.
"""

from __future__ import annotations

from ml4ge.arguments.flag import AT_LEAST_0, AT_LEAST_1, OPEN_UNIT, POSITIVE, TRAINING, Flag
from ml4ge.training_settings import FLAG_DEFAULTS as TRAINING_DEFAULTS

TRAINING_FLAGS: dict[str, Flag] = {
    "batch_size": Flag(TRAINING, 8, "Global batch size (split across replicas).", bounds=AT_LEAST_1),
    "epochs": Flag(TRAINING, 10, "Maximum number of epochs.", bounds=AT_LEAST_1),
    "training_steps": Flag(TRAINING, 0, "Steps per epoch; 0 = one pass over train.", bounds=AT_LEAST_0),
    "validation_steps": Flag(TRAINING, 0, "Validation steps; 0 = one pass.", bounds=AT_LEAST_0),
    "test_steps": Flag(TRAINING, 0, "Test steps; 0 = one pass.", bounds=AT_LEAST_0),
    "patience": Flag(TRAINING, 8, "Epochs without improvement before stopping.", bounds=AT_LEAST_0),
    "learning_rate": Flag(TRAINING, TRAINING_DEFAULTS["learning_rate"],
                          "Initial learning rate (a --model_preset brings its own unless this is given).",
                          bounds=POSITIVE),
    "optimizer": Flag(TRAINING, TRAINING_DEFAULTS["optimizer"], "Keras optimizer name."),
    "lr_schedule": Flag(TRAINING, TRAINING_DEFAULTS["lr_schedule"],
                        "Learning-rate schedule: plateau (x --lr_factor after --lr_patience epochs without a lower "
                        "val_loss), step (x --lr_factor every --lr_step_epochs), cosine (warm-up of "
                        "--lr_warmup_epochs, then cosine decay to --lr_min) or constant."),
    "lr_factor": Flag(TRAINING, TRAINING_DEFAULTS["lr_factor"], "plateau/step: factor applied to the learning rate.",
                      bounds=OPEN_UNIT),
    "lr_patience": Flag(TRAINING, TRAINING_DEFAULTS["lr_patience"], "plateau: epochs without improvement before "
                                                                    "lowering (default: half of --patience).",
                        type=int, bounds=AT_LEAST_0),
    "lr_min": Flag(TRAINING, TRAINING_DEFAULTS["lr_min"], "Floor of the learning rate (plateau, step, cosine).",
                   bounds=AT_LEAST_0),
    "lr_step_epochs": Flag(TRAINING, TRAINING_DEFAULTS["lr_step_epochs"], "step: epochs between reductions.",
                           bounds=AT_LEAST_1),
    "lr_warmup_epochs": Flag(TRAINING, TRAINING_DEFAULTS["lr_warmup_epochs"], "cosine: epochs of linear warm-up.",
                             bounds=AT_LEAST_0),
    "precise_bn": Flag(TRAINING, None, "Recompute the BatchNorm moving statistics at the end of every epoch, "
                                       "before validation, from this many training batches (a seeded subset, "
                                       "dropout off); 0 = Keras' moving averages only. Default: the family's "
                                       "(predictor 16, others 0).", type=int, bounds=AT_LEAST_0),
    "strategy": Flag(TRAINING, "auto", "Distribution strategy.",
                     choices=("auto", "default", "mirrored", "multi_worker", "tpu")),
    "mixed_precision": Flag(TRAINING, False, "bfloat16 on CPU/TPU, float16 on GPU."),
    "recompute_encoders": Flag(TRAINING, False, "Recompute each encoder's activations in the backward pass instead "
                                                "of keeping them through the decoder: less training memory for one "
                                                "more forward pass of the encoders (autoencoder family; encoders "
                                                "without batch norm or dropout). The model does not change."),
    "inspect_model": Flag(TRAINING, False, "Write an architecture summary and timing."),
    "keep_checkpoints": Flag(TRAINING, False, "train: keep checkpoints/ (the resume backup and the best weights) "
                                              "after the run finishes; without it a finished run deletes them "
                                              "(the model files hold the result; a rerun has nothing to redo)."),
}
