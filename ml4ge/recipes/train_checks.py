"""The checks of ``--mode train``'s flags against the data, the registries and a model to fine-tune, before any
work: the tensor folder, block and family names, ``--optional_tensors``, ``--pairs``, ``--model_file`` and the
target and background groups of a family trained on two (cvae). :func:`ml4ge.recipes.train.validate` runs them.
"""

from __future__ import annotations

import argparse

from ml4ge.hd5 import hd5_paths
from ml4ge.lookup import tensormap_names


def check_tensors_folder(args: argparse.Namespace) -> None:
    """Raises FileNotFoundError/ValueError when ``--tensors`` is unset, missing or holds no ``.hd5`` file."""
    if not args.tensors:
        raise ValueError(f"--mode {args.mode} needs --tensors, the folder of <sample_id>.hd5 files.")
    if not hd5_paths(args.tensors):
        raise ValueError(f"--tensors {args.tensors!r} holds no .hd5 files; run --mode tensorize first.")


def check_blocks(args: argparse.Namespace) -> None:
    """Unknown family or block names fail here, with the closest registered names (UnknownNameError, a KeyError)."""
    from ml4ge.models.factory import family_class
    from ml4ge.models.registries import DECODERS, ENCODERS, MERGES

    family_class(args.family)
    for registry, names in ((ENCODERS, args.encoder_blocks), (MERGES, args.merge_blocks),
                            (DECODERS, args.decoder_blocks)):
        for name in names:
            if not str(name).endswith(".keras"):
                registry.get(name)


def optional_names(args: argparse.Namespace, input_tmaps, output_tmaps) -> tuple[str, ...]:
    """TensorMap names of ``--optional_tensors``.

    Raises:
        ValueError: for a name that is not among the input or output TensorMaps, or every input optional.
    """
    given = list(args.optional_tensors)
    by_name = tensormap_names(given, [*args.input_tensors, *args.output_tensors], [*input_tmaps, *output_tmaps])
    unknown = [name for name in given if name not in by_name]
    if unknown:
        raise ValueError(f"--optional_tensors {' '.join(unknown)}: not among --input_tensors or --output_tensors; "
                         "name maps the model takes or gives.")
    names = tuple(dict.fromkeys(by_name.values()))
    if input_tmaps and all(tm.name in names for tm in input_tmaps):
        raise ValueError("--optional_tensors names every input; keep at least one input required.")
    return names


def check_pairs(args: argparse.Namespace, input_tmaps) -> None:
    """Every ``--pairs`` member must be one of the inputs; ``--merge_blocks pair`` over other than two inputs
    needs ``--pairs``."""
    known = set(args.input_tensors) | {tm.name for tm in input_tmaps}
    for pair in args.pairs:
        missing = [member for member in pair if member not in known]
        if missing:
            raise ValueError(f"--pairs {' '.join(pair)}: {', '.join(missing)} not among --input_tensors "
                             f"{' '.join(args.input_tensors)}; add it there or fix the pair.")
    if "pair" in args.merge_blocks and not args.pairs and len(input_tmaps) != 2:
        raise ValueError(f"--merge_blocks pair with {len(input_tmaps)} inputs needs --pairs A B (only two inputs "
                         "pair up by themselves).")


def saved_model_io(model_file) -> tuple[dict[str, tuple], list[str]]:
    """``({input name: shape}, [output names])`` of a model saved by ``--mode train``, read from its spec (no
    weights loaded).

    Raises:
        ValueError: if the file is not a model saved by ``--mode train``.
    """
    from ml4ge.models.artifacts import saved_spec
    from ml4ge.models.family import map_from_spec

    spec = saved_spec(model_file)
    inputs = {tm.input_name: tm.shape for tm in map(map_from_spec, spec["inputs"])}
    return inputs, sorted(tm.output_name for tm in map(map_from_spec, spec["outputs"]))


def check_model_file(args: argparse.Namespace, input_tmaps, output_tmaps) -> None:
    """A model to fine-tune must take the inputs and give the outputs that the TensorMaps describe.

    Raises:
        ValueError: naming what the model takes and gives and what the flags ask for.
    """
    inputs, outputs = saved_model_io(args.model_file)
    wanted_inputs = {tm.input_name: tuple(tm.shape) for tm in input_tmaps}
    wanted_outputs = sorted(tm.output_name for tm in output_tmaps)
    if inputs != wanted_inputs or outputs != wanted_outputs:
        raise ValueError(
            f"--model_file {args.model_file!r} takes inputs {inputs} and gives outputs {outputs}, but "
            f"--input_tensors {' '.join(args.input_tensors)} need {wanted_inputs} and --output_tensors "
            f"{' '.join(args.output_tensors)} need {wanted_outputs}; pass the TensorMaps the model was trained "
            "with, or leave out --model_file to train a new model."
        )


def check_groups(args: argparse.Namespace) -> None:
    """A family trained on two groups needs both lists and two rows per batch; other families take neither list."""
    from ml4ge.models.factory import family_class

    grouped = getattr(family_class(args.family), "groups", False)
    if grouped and not (args.target_csv and args.background_csv):
        raise ValueError(f"--family {args.family} trains on target and background samples: give --target_csv and "
                         "--background_csv.")
    if grouped and args.batch_size < 2:
        raise ValueError(f"--family {args.family} puts half of every batch in each group: --batch_size must be at "
                         f"least 2, got {args.batch_size}.")
    if grouped and args.strategy in ("mirrored", "multi_worker", "tpu"):
        raise ValueError(f"--family {args.family} over several replicas would give one replica only target rows and "
                         "another only background rows; use --strategy default (one device).")
    if not grouped and (args.target_csv or args.background_csv):
        raise ValueError("--target_csv and --background_csv are for --family cvae; leave them out for "
                         f"--family {args.family}.")
