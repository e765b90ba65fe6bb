"""ml4h's side of ``bench_ml4h_parity.py``: run with ml4h's interpreter (``--ml4h_python``), never ml4ge's.

ml4h's own code builds and feeds the model: its ``parse_args`` reads the seed-style command line (ml4h's defaults
give the 3x3x2 kernels and 2x2x1 pooling), its model factory builds and compiles the autoencoder, and its
``test_train_valid_tensor_generators`` makes the training data from the HD5 cohort with ml4h's ``--num_workers``
meaning (the training loader gets ``int(training_steps / (training_steps + validation_steps) * num_workers)`` workers,
at least 1, and the validation and test loaders start theirs too, as in ml4h's train recipe). The model then trains
``warmup + steps`` batches of that dataset with ``model.fit``, as ml4h's ``train_model_from_generators`` does but
without its validation, checkpoints and plots (ml4ge's child skips them too).

Usage: ``python ml4h_parity_child.py COHORT WORKERS WARMUP STEPS SCRATCH``; prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from parity_common import BATCH, GROUP, NAME, SEED_FLAGS, SIZE, print_result, result_row, step_clock

MAPS_PACKAGE = "parity_maps"
# ml4h finds TensorMaps by module path (--tensormap_prefix); this one reads /bench/t1_64/<first dataset> with
# ml4h's default reader and z-scores each volume as ml4ge's PerSampleZScore does.
MAPS_MODULE = f"""
from ml4h.normalizer import ZeroMeanStd1
from ml4h.TensorMap import Interpretation, TensorMap

{NAME} = TensorMap("{NAME}", Interpretation.CONTINUOUS, shape=({SIZE}, {SIZE}, {SIZE}, 1), path_prefix="{GROUP}",
                   normalization=ZeroMeanStd1())
"""


def write_maps(scratch: Path) -> None:
    """Write the TensorMap's module under ``scratch`` and put it on the import path."""
    package = scratch / MAPS_PACKAGE
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "volume.py").write_text(MAPS_MODULE)
    sys.path.insert(0, str(scratch))


def ml4h_args(cohort: Path, workers: int, scratch: Path):
    """ml4h's parsed arguments for the seed-style autoencoder (ml4h's parse_args reads ``sys.argv``)."""
    from ml4h.arguments import parse_args

    sys.argv = ["recipes.py", "--mode", "train", "--tensors", str(cohort), "--output_folder", str(scratch / "runs"),
                "--id", f"parity_{workers}", "--tensormap_prefix", MAPS_PACKAGE,
                "--input_tensors", f"volume.{NAME}", "--output_tensors", f"volume.{NAME}",
                "--encoder_blocks", "conv_encode", "--merge_blocks", "--decoder_blocks", "conv_decode", *SEED_FLAGS,
                "--batch_size", str(BATCH), "--learning_rate", "0.0001", "--num_workers", str(workers)]
    return parse_args()


def run(cohort: Path, workers: int, warmup: int, steps: int, scratch: Path) -> dict:
    write_maps(scratch)
    args = ml4h_args(cohort, workers, scratch)
    from ml4h.models.model_factory import make_multimodal_multitask_model
    from ml4h.tensor_generators import test_train_valid_tensor_generators

    train, _valid, _test = test_train_valid_tensor_generators(**args.__dict__)
    model, *_ = make_multimodal_multitask_model(**args.__dict__)
    times: list[float] = []
    cpu: list[float] = []
    model.fit(train, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[step_clock(times, cpu)])
    return result_row("ml4h", workers, model, times, cpu, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cohort", type=Path)
    parser.add_argument("workers", type=int)
    parser.add_argument("warmup", type=int)
    parser.add_argument("steps", type=int)
    parser.add_argument("scratch", type=Path)
    options = parser.parse_args()
    print_result(run(options.cohort, options.workers, options.warmup, options.steps, options.scratch))


if __name__ == "__main__":
    main()
