"""``--mode train``: fit a model made of blocks on the train split and write the run folder.

``<output_folder>/<id>/`` receives the model files of :mod:`ml4ge.models.artifacts` (``<id>.keras``,
``encoder_<tmap>.keras``, ``decoder_<tmap>.keras``, ``merger.keras``), ``train.csv``/``valid.csv``/``test.csv``,
``training_log.csv``, ``tensorboard/``, ``learning_curves_<id>.png``, ``test_metrics.tsv``,
``skipped_samples.tsv`` and, for autoencoders, ``reconstructions/`` (plus ``decoding_<output>_from_<input>/``
for pair models). Starting the same run again resumes from its last finished epoch (see :mod:`ml4ge.training`).

The model is built by the family ``--family`` names (default ``autoencoder``: ``--encoder_blocks``,
``--merge_blocks``, ``--decoder_blocks``) and trained with the training settings of the flags or of
``--model_preset`` (:mod:`ml4ge.training_settings`), through the family's own compile and callbacks. Maps named by
``--optional_tensors`` may be missing from a sample: it is kept, with zeros and a presence flag. Blocks may take
what they need from the training split before the model is built (:func:`prepared_architecture`: the ViT blocks'
brain tokens) and choose their outputs' loss (:func:`block_losses`: the ViT decoder's patch-masked MSE).

With ``--model_file <trained>.keras`` the recipe fine-tunes that model instead of building one from the block
flags: the model is loaded (it must take ``--input_tensors`` and give ``--output_tensors``, checked before any
work), compiled with the training settings and trained in the new run folder, with its own split, logs and saved
parts.

In multi-worker training every worker runs this same recipe; only the chief writes the run folder, the others
write to ``<run folder>/workers/worker_<i>/`` (TensorFlow's recommended pattern: all workers must take part in
every collective step, including the test evaluation).
"""

from __future__ import annotations

import argparse
import logging
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from ml4ge.arguments import flag_settings, run_folder
from ml4ge.lookup import resolve_all, tensormap_names
from ml4ge.recipes.ml4h_compat import check_ml4h_flags, inspect_training_model, unused_conv_width
from ml4ge.recipes.settings import FitSettings, ModelSettings, PredictorSettings, RunSettings, SplitSettings
from ml4ge.recipes.train_checks import (
    check_blocks,
    check_groups,
    check_model_file,
    check_pairs,
    check_tensors_folder,
    optional_names,
)

log = logging.getLogger(__name__)
RECONSTRUCTED_SAMPLES = 3


@flag_settings
class TrainSettings(RunSettings, SplitSettings, ModelSettings, FitSettings, PredictorSettings):
    """The flags of ``--mode train``: the data and its split, the architecture, and how it is fitted."""

    mode = "train"
    rerun_may_change = RunSettings.rerun_may_change | {"keep_checkpoints"}
    # What a rerun resumes from; --overwrite removes it and the run starts over.
    state_files = ("checkpoints", "training_log.csv", "train.csv", "valid.csv", "test.csv")
    tensors: str | None
    input_tensors: tuple[str, ...]
    output_tensors: tuple[str, ...]
    optional_tensors: tuple[str, ...]
    tensormap_prefix: str | None
    cache: bool
    keep_checkpoints: bool
    target_csv: str | None
    background_csv: str | None
    save_last_model: bool
    learning_rate_schedule: str | None
    model_layers: str | None
    freeze_model_layers: bool


Settings = TrainSettings


def tensormaps(args: argparse.Namespace):
    """``(input_tmaps, output_tmaps)`` resolved with ``--tensormap_prefix``."""
    return resolve_all(args.input_tensors, args.tensormap_prefix), resolve_all(args.output_tensors,
                                                                               args.tensormap_prefix)


def model_settings(args: argparse.Namespace, input_tmaps, output_tmaps):
    """``(Architecture, TrainingSettings)`` of the flags (through ``--model_preset`` when given), with ``--pairs``
    given as command-line names turned into TensorMap names and the family's own options read from the flags."""
    from dataclasses import replace

    from ml4ge.models.factory import Architecture, family_class
    from ml4ge.models.presets import settings_from_args

    config, training = settings_from_args(args)
    if args.pairs:
        names = tensormap_names([member for pair in args.pairs for member in pair], args.input_tensors, input_tmaps)
        pairs = tuple(tuple(names.get(member, member) for member in pair) for pair in args.pairs)
        config = replace(config, pair=replace(config.pair, pairs=pairs))
    architecture = Architecture(args.family, tuple(args.encoder_blocks),
                                tuple(args.merge_blocks), tuple(args.decoder_blocks), config,
                                optional_names(args, input_tmaps, output_tmaps),
                                family_class(args.family).options_from_args(args))
    return architecture, training


def validate(args: TrainSettings) -> None:
    """Checks before any work (those of the data, blocks and groups: :mod:`ml4ge.recipes.train_checks`).

    Raises:
        ValueError, FileNotFoundError, KeyError: with what to change.
    """
    if not args.input_tensors or not args.output_tensors:
        raise ValueError("--mode train needs --input_tensors and --output_tensors (the same map in both makes an "
                         "autoencoder).")
    for flag in ("batch_size", "epochs"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag} must be at least 1, got {getattr(args, flag)}.")
    check_ml4h_flags(args)
    check_tensors_folder(args)
    input_tmaps, output_tmaps = tensormaps(args)
    check_pairs(args, input_tmaps)
    check_blocks(args)
    check_groups(args)
    architecture, _ = model_settings(args, input_tmaps, output_tmaps)
    if args.model_file:
        check_model_file(args, input_tmaps, output_tmaps)
    else:
        from ml4ge.models.factory import family_class

        family_class(args.family).check_architecture(architecture, input_tmaps, output_tmaps)
        if args.recompute_encoders:
            family_class(args.family).check_recompute(architecture, input_tmaps)


def run(args: TrainSettings) -> int:
    """Train, save the parts, plot, evaluate the test split. Returns the exit status (0)."""
    from ml4ge import strategy as strategies

    distribution = strategies.make_strategy(args.strategy)
    policy = strategies.set_precision(args.mixed_precision, distribution)
    strategies.check_batch_size(args.batch_size, distribution)
    chief = strategies.is_chief(distribution)
    folder = run_folder(args)
    if not chief:
        folder = folder / "workers" / f"worker_{strategies.worker_index(distribution)}"
        folder.mkdir(parents=True, exist_ok=True)
    log.info("training in %s (precision %s, chief %s)", folder, policy, chief)
    from ml4ge.training import disk_errors

    with disk_errors(folder):
        return _train(args, distribution, folder, chief)


def _train(args, distribution, folder: Path, chief: bool) -> int:
    from ml4ge import training
    from ml4ge.models.artifacts import load_model, save_model
    from ml4ge.models.factory import build_family
    from ml4ge.models.layout import model_path
    from ml4ge.pipeline import SkippedSamples, TensorDataset, pipeline_errors
    from ml4ge.precise_bn import calibration_subset
    from ml4ge.splits import split_for_run
    from ml4ge.strategy import is_multi_worker, keras_distribution_fixes
    from ml4ge.templates import initialize_templates

    if not args.overwrite and training.finished_earlier(folder, model_path(folder, args.id)):
        log.info("the run in %s finished earlier (its model is saved, its checkpoints removed): nothing to redo; "
                 "--overwrite trains it again", folder)
        return 0
    input_tmaps, output_tmaps = tensormaps(args)
    if unused_conv_width(args, [*input_tmaps, *output_tmaps]):
        log.warning(unused_conv_width(args, [*input_tmaps, *output_tmaps]))
    paths = split_for_run(args, folder)
    skipped = SkippedSamples(folder)
    architecture, settings = model_settings(args, input_tmaps, output_tmaps)
    args = replace(args, batch_size=settings.batch_size)  # a preset's own (cpu_brain's) unless the flag gave one
    if not args.model_file:  # a resumed run rebuilds the same: its split, and so its training samples, is reused
        architecture = prepared_architecture(architecture, paths["train"], input_tmaps, output_tmaps)
    multi_worker = is_multi_worker(distribution)

    training.set_seed(args.random_seed)  # before the model is built: its initial weights follow --random_seed
    with strategy_scope(distribution):
        if args.model_file:
            log.info("fine-tuning %s (its architecture replaces the block flags)", args.model_file)
            model = load_model(args.model_file)
        else:
            model = build_family(architecture, input_tmaps, output_tmaps)
        if settings.recompute_encoders:
            model.recompute_encoders()
            log.info("the encoders recompute their activations in the backward pass (--recompute_encoders)")
        model.compile_for_training(block_losses(model, output_tmaps), settings)
    log.info("%s model; %s at learning rate %.3g, batches of %d; schedule %s", model.family, settings.optimizer,
             settings.learning_rate, args.batch_size, settings.schedule)

    groups = group_paths(args, paths) if args.target_csv else None
    if groups and distribution.num_replicas_in_sync > 1:  # --strategy auto found several devices
        raise ValueError(f"--family {args.family} needs one replica (its batches are split into target and background "
                         f"halves), found {distribution.num_replicas_in_sync}; use --strategy default.")

    def data(split: str, shuffle: bool, seed: int, subset=None):
        def read(split_paths, batch_size):
            sampler = epoch_sampler(model, split_paths, output_tmaps, shuffle, seed)
            return TensorDataset(split_paths, input_tmaps, output_tmaps, batch_size, shuffle=shuffle,
                                 augment=shuffle, num_workers=args.num_workers, cache=args.cache and not shuffle,
                                 seed=seed, skipped=skipped, min_rows=distribution.num_replicas_in_sync,
                                 optional=model.optional, sampler=sampler)

        if groups is None or subset is not None:
            return read(paths[split] if subset is None else subset, args.batch_size)
        from ml4ge.models.cvae_data import HalfAndHalf

        return HalfAndHalf(*(read(groups[split][name], args.batch_size // 2) for name in ("target", "background")))

    if not args.model_file:
        initialize_templates(model, paths["train"], [*input_tmaps, *output_tmaps])
    if args.inspect_model and chief:
        inspect_training_model(model, folder, args, paths["train"], (input_tmaps, output_tmaps), multi_worker)
    calibration = calibration_subset(model, settings, paths["train"], args.batch_size, args.random_seed,
                                     distribution.num_replicas_in_sync)
    calibrating = data("train", False, args.random_seed, calibration) if calibration else nullcontext()
    with (data("train", True, args.random_seed) as train, data("valid", False, args.random_seed) as valid,
          calibrating as calibrate):
        train_ds, valid_ds = _distributable(train.dataset(), multi_worker), _distributable(valid.dataset(),
                                                                                          multi_worker)
        keras_fixes = keras_distribution_fixes(model, train_ds.element_spec, distribution)
        with pipeline_errors(), keras_fixes:
            training.fit(model, train_ds, valid_ds, folder, settings, args.training_steps, args.validation_steps,
                         write_outputs=chief, callbacks=model.training_callbacks(settings),
                         calibration=calibrate.dataset() if calibration else None)
    if not args.save_last_model:  # ml4h's --save_last_model keeps the last epoch's weights
        training.load_best_weights(model, folder)
    save_model(model, folder, args.id)
    if chief:
        from ml4ge import plots

        plots.learning_curves(folder / training.TRAINING_LOG, folder / f"learning_curves_{args.id}.png", args.id)
    if paths["test"]:
        with data("test", False, args.random_seed) as test, pipeline_errors():
            test_ds = _distributable(test.dataset(), multi_worker)
            with keras_distribution_fixes(model, test_ds.element_spec, distribution):
                metrics = training.evaluate(model, test_ds, args.test_steps)
        training.write_metrics(metrics, folder / "test_metrics.tsv")
        log.info("test metrics: %s", metrics)
        if chief and hasattr(model, "test_report"):  # a predictor: its metrics on the test split's predictions
            with data("test", False, args.random_seed) as test, pipeline_errors():
                model.test_report(test, folder)
        if chief:
            plot_reconstructions(model, input_tmaps, output_tmaps, paths["test"], folder, args)
    else:
        log.warning("the test split is empty (--test_ratio 0 and no --test_csv): no test metrics or reconstructions")
    skipped.write()
    if not args.keep_checkpoints:
        training.remove_checkpoints(folder)
    return 0


def epoch_sampler(model, split_paths, output_tmaps, shuffle: bool, seed: int):
    """The family's order of a training pass (a predictor's balanced epochs), or None (a permutation)."""
    sampler = getattr(model, "train_sampler", None)
    return sampler(split_paths, output_tmaps, seed) if shuffle and sampler is not None else None


def group_paths(args, paths) -> dict[str, dict[str, list]]:
    """``{split: {"target": paths, "background": paths}}`` of ``--target_csv`` and ``--background_csv`` (a family
    that trains on two groups, half of every batch each: cvae)."""
    from ml4ge.models.cvae_data import split_groups
    from ml4ge.splits import read_ids

    target, background = read_ids(args.target_csv), read_ids(args.background_csv)
    return {split: split_groups(members, target, background, split) for split, members in paths.items()}


def prepared_architecture(architecture, train_paths, input_tmaps, output_tmaps):
    """``architecture`` with what its blocks take from the training data before the model is built.

    A block class may define ``prepare(config, train_paths, tmaps) -> config``; it is called with the maps of its
    role (inputs for encoders, outputs for decoders), in the order the blocks are named. The ViT blocks take their
    brain tokens this way (:meth:`ml4ge.models.vit.ViTEncoder.prepare`). (The conv decoder template is not such a
    step: it is a weight, set after building by :func:`ml4ge.templates.initialize_templates`.)
    """
    from dataclasses import replace

    from ml4ge.models.builtins import load_builtins
    from ml4ge.models.factory import family_class
    from ml4ge.models.registries import DECODERS, ENCODERS

    load_builtins()
    prepare_family = getattr(family_class(architecture.family), "prepare", None)
    if prepare_family is not None:  # a predictor: target scales, class weights, inputs nobody has
        architecture = prepare_family(architecture, list(train_paths), list(input_tmaps), list(output_tmaps))
    config = architecture.config
    for registry, names, tmaps in ((ENCODERS, architecture.encoder_blocks, input_tmaps),
                                   (DECODERS, architecture.decoder_blocks, output_tmaps)):
        for name in names:
            prepare = None if str(name).endswith(".keras") else getattr(registry.get(name), "prepare", None)
            if prepare is not None:
                config = prepare(config, list(train_paths), list(tmaps))
    return replace(architecture, config=config)


def block_losses(model, output_tmaps) -> list:
    """``output_tmaps`` with the loss each trains with: its decoder block's ``training_loss(tm)`` where the block
    defines one (the ViT decoder: the patch-masked MSE at its patch size in place of ``masked_mse``), else its own;
    and the block's ``training_metrics(tm)`` where it defines them (the soft_label head's MAE in years).

    Read from the model's spec, so a model loaded to fine-tune gets the loss of the blocks it was built from.
    """
    from dataclasses import replace

    from ml4ge.models.config import ModelConfig
    from ml4ge.models.registries import DECODERS

    spec = getattr(model, "spec", {})
    config = ModelConfig.from_dict(spec.get("config", {}))
    tmaps = []
    for tm in output_tmaps:
        block = spec.get("decoders", {}).get(tm.name, {}).get("block")
        decoder = DECODERS.get(block).from_config(config) if block in DECODERS else None
        if hasattr(decoder, "training_loss"):
            tm = replace(tm, loss=decoder.training_loss(tm))
        if hasattr(decoder, "training_metrics"):  # the soft_label head: MAE in years of its expectation
            tm = replace(tm, metrics=tuple(decoder.training_metrics(tm)))
        tmaps.append(tm)
    return tmaps


def _distributable(dataset, multi_worker: bool):
    if not multi_worker:
        return dataset
    from ml4ge.strategy import shard_by_data

    return shard_by_data(dataset)


def strategy_scope(distribution):
    return distribution.scope()


def write_summary(model, path: Path) -> None:
    """The Keras summary of ``model`` as text."""
    lines: list[str] = []
    model.summary(print_fn=lambda line, *_, **__: lines.append(line))
    path.write_text("\n".join(lines) + "\n")


def plot_reconstructions(model, input_tmaps, output_tmaps, test_paths, folder: Path, args) -> None:
    """Inputs beside reconstructions for a few test subjects, and each encoder through every decoder for pairs."""
    import keras
    import numpy as np

    from ml4ge import plots
    from ml4ge.hd5 import sample_id_from_path
    from ml4ge.pipeline import iterate_batches

    autoencoded = [tm for tm in output_tmaps if tm in input_tmaps]
    if not autoencoded:
        return
    batches = iterate_batches(test_paths[: 2 * RECONSTRUCTED_SAMPLES], input_tmaps, output_tmaps,
                              RECONSTRUCTED_SAMPLES, num_workers=0, optional=model.optional)
    sample_ids, inputs, targets = next(batches)
    batches.close()
    model_inputs = {name: value for name, value in inputs.items() if name in model.input}
    predicted = model(model_inputs, training=False)
    paths = {sample_id_from_path(path): path for path in test_paths[: 2 * RECONSTRUCTED_SAMPLES]}
    affines = {tm.name: [plots.volume_affine(tm, paths[i]) for i in sample_ids] for tm in autoencoded}
    for tm in autoencoded:
        reconstructed = keras.ops.convert_to_numpy(predicted[tm.output_name])
        plots.reconstructions(sample_ids, inputs[tm.input_name], reconstructed, folder / "reconstructions",
                              tm.name, plots.loss_masks(targets[tm.output_name], reconstructed),
                              affines=affines[tm.name])
    if not args.pairs or len(input_tmaps) < 2:
        return
    merger = model.merger_model()
    for source in input_tmaps:
        embedding = model.encoders[source.name](inputs[source.input_name], training=False)
        latent = merger([embedding] * len(input_tmaps), training=False)
        for target in autoencoded:
            decoded = np.asarray(keras.ops.convert_to_numpy(model.decode(latent, target)))
            plots.reconstructions(sample_ids, inputs[target.input_name], decoded,
                                  folder / f"decoding_{target.name}_from_{source.name}",
                                  f"{target.name}_from_{source.name}",
                                  plots.loss_masks(targets[target.output_name], decoded),
                                  (f"target {target.name}", f"decoded from {source.name}"), affines[target.name])
