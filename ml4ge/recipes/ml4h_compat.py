"""The train recipe's answers to ml4h's flags: those it refuses (with the ml4ge flag to use), the note on an unused
``--conv_width``, and ``--inspect_model`` run on a batch of the training split."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("ml4ge.recipes.train")


def check_ml4h_flags(args) -> None:
    """ml4h flags ml4ge does not take, refused with what to use instead; ``--inspect_model`` without Graphviz.

    Raises:
        ValueError: naming the ml4ge flag to use.
    """
    if args.learning_rate_schedule:
        raise ValueError(f"--learning_rate_schedule {args.learning_rate_schedule} is ml4h's; use --lr_schedule "
                         "(cosine: warm-up of --lr_warmup_epochs then cosine decay to --lr_min over the run; plateau, "
                         "step, constant).")
    if args.model_layers or args.freeze_model_layers:
        raise ValueError("--model_layers/--freeze_model_layers are ml4h's (load weights by layer name, optionally "
                         "frozen); use --model_file <trained>.keras to fine-tune a whole trained model, or "
                         "--encoder_blocks encoder_<tmap>.keras to start from trained encoders.")
    if args.inspect_model:
        from ml4ge.models.inspect import check_plotting

        check_plotting()


def unused_conv_width(args, tmaps) -> str | None:
    """A note when ``--conv_width`` (the kernel of 1-D maps) is given but no map is 1-D (ml4h says nothing)."""
    from ml4ge.arguments import FLAGS

    if tuple(args.conv_width) == FLAGS["conv_width"].default or any(len(tm.shape) == 2 for tm in tmaps):
        return None
    return (f"--conv_width {' '.join(map(str, args.conv_width))} sets the kernel of 1-D maps only and no map here is "
            "1-D: --conv_x/--conv_y/--conv_z set the kernels of images and volumes (ml4h ignores it too)")


def inspect_training_model(model, folder: Path, args, train_paths, tmaps, multi_worker: bool) -> None:
    """``--inspect_model``: summary, picture and (but in multi-worker training) the time of a training and an
    inference batch of the training split (:mod:`ml4ge.models.inspect`)."""
    from ml4ge.models.inspect import inspect_model
    from ml4ge.pipeline import iterate_batches

    batch = None
    if not multi_worker:
        batches = iterate_batches(train_paths[: 2 * args.batch_size], *tmaps, args.batch_size, num_workers=0,
                                  optional=model.optional)
        _, inputs, targets = next(batches)
        batches.close()
        batch = (inputs, targets)
    written = inspect_model(model, folder, args.id, batch)
    log.info("--inspect_model wrote %s", ", ".join(str(path) for path in written.values()))
