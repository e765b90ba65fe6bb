"""``--mode brain_age``: brain age of a trained model for every sample, bias-corrected on controls, and BAG tables.

Inputs:
    --model_file run/<id>.keras      a trained model whose output is the age map (the ``soft_label`` head: the
                                     expectation over its bins; any other scalar head: its value on the age scale).
    --tensors --input_tensors        the samples and the model's input maps; --output_tensors the age map.
    --sample_csv ids.csv             the samples to evaluate (default: every sample not in the correction set).
    --bias_correction_csv ids.csv    the samples the linear correction is fitted on (default: the model's training
                                     split, ``train.csv`` beside the model file, less the non-controls when
                                     --controls_csv lists the controls). It may share no sample with the evaluated
                                     ones (refused before any work; method: :mod:`ml4ge.brain_age`).

Outputs in ``<output_folder>/<id>/``: ``brain_age_<id>.tsv`` (per sample: split, whether it is in the correction set,
age, raw and corrected brain age, BAG), ``brain_age_summary_<id>.tsv`` (per split, the correction set and all: MAE,
R^2, r, corrected MAE, BAG mean/SD, corr(BAG, age) before and after), ``bias_correction_<id>.json`` (a, b, n and the
fit set's ids), ``bag_<id>.tsv`` (``sample_id, bag`` of the evaluated samples: a one-column table for ``compare``
and ``associate --latent_tables``), ``bag_covariates_<id>.tsv`` (``sample_id, age, sex`` for ``--covariates_file``;
sex where the files hold the ``sex`` map), ``brain_age_<id>.png`` and ``skipped_samples.tsv``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ml4ge.arguments import flag_settings, run_folder
from ml4ge.atomic import write_table, write_text
from ml4ge.brain_age import LeakError, brain_age_table, fit_bias_correction, plot_brain_age, split_summary
from ml4ge.lookup import resolve_all
from ml4ge.recipes.settings import RunSettings

log = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")
OTHER_SPLIT = "other"


@flag_settings
class BrainAgeSettings(RunSettings):
    """The flags of ``--mode brain_age``."""

    mode = "brain_age"
    tensors: str | None
    input_tensors: tuple[str, ...]
    output_tensors: tuple[str, ...]
    tensormap_prefix: str | None
    sample_csv: str | None
    model_file: str | None
    batch_size: int
    bias_correction_csv: str | None
    controls_csv: str | None


Settings = BrainAgeSettings


def validate(args: BrainAgeSettings) -> None:
    """Raises ValueError/FileNotFoundError/KeyError before any work, with what to change (a correction set that
    holds an evaluated sample included)."""
    from ml4ge.latents import cohort_paths
    from ml4ge.recipes.infer_encoders import check_maps, check_model_file

    check_model_file(args)
    if not args.input_tensors or len(args.output_tensors) != 1:
        raise ValueError("--mode brain_age needs the model's --input_tensors and one --output_tensors: its age map.")
    if not args.tensors:
        raise ValueError("--mode brain_age needs --tensors, the folder of <sample_id>.hd5 files.")
    for flag in ("bias_correction_csv", "controls_csv"):
        if getattr(args, flag) and not Path(getattr(args, flag)).is_file():
            raise FileNotFoundError(f"--{flag} {getattr(args, flag)!r} does not exist.")
    cohort_paths(args.tensors, args.sample_csv)
    check_maps(args.model_file, resolve_all(args.input_tensors, args.tensormap_prefix),
               resolve_all(args.output_tensors, args.tensormap_prefix), every_input=True)
    correction = correction_ids(args)
    if args.sample_csv:
        shared = sorted(correction & set(_ids(args.sample_csv)))
        if shared:
            raise LeakError(f"--sample_csv evaluates {len(shared)} samples of the bias-correction set (e.g. "
                            f"{shared[:3]}); the correction must be fitted on other samples: give another "
                            "--bias_correction_csv or leave them out of --sample_csv.")


def _ids(path) -> list[str]:
    from ml4ge.splits import read_ids

    return [str(i) for i in read_ids(path)]


def model_split_files(model_file) -> dict[str, Path]:
    """``{split: <model folder>/<split>.csv}`` of the training run, for those that exist."""
    folder = Path(model_file).parent
    return {split: folder / f"{split}.csv" for split in SPLITS if (folder / f"{split}.csv").is_file()}


def correction_ids(args: BrainAgeSettings) -> set[str]:
    """The bias-correction set: ``--bias_correction_csv``, else the training split's controls.

    Raises:
        FileNotFoundError: without ``--bias_correction_csv`` when the model's folder has no ``train.csv``.
        ValueError: for an empty set.
    """
    if args.bias_correction_csv:
        ids = set(_ids(args.bias_correction_csv))
    else:
        train = model_split_files(args.model_file).get("train")
        if train is None:
            raise FileNotFoundError(f"no train.csv beside --model_file {args.model_file!r} to take the training "
                                    "split's controls from; give --bias_correction_csv.")
        ids = set(_ids(train))
        if args.controls_csv:
            ids &= set(_ids(args.controls_csv))
    if not ids:
        raise ValueError("the bias-correction set is empty (no training sample is in --controls_csv?); give "
                         "--bias_correction_csv.")
    return ids


def split_labels(model_file, ids) -> pd.Series:
    """Each sample's split in the model's training run (``other`` for samples it did not use)."""
    labels = pd.Series(OTHER_SPLIT, index=pd.Index(list(ids), name="sample_id"), dtype=object)
    for split, path in model_split_files(model_file).items():
        labels[labels.index.isin(set(_ids(path)))] = split
    return labels


def age_readout(model, age_tm):
    """``f(outputs) -> [N] ages`` of the model's age output: the soft-label expectation or the descaled value."""
    from ml4ge.models.config import ModelConfig
    from ml4ge.models.soft_label import expected_value
    from ml4ge.recipes.infer import descale

    spec = getattr(model, "spec", {})
    if spec.get("decoders", {}).get(age_tm.name, {}).get("block") == "soft_label":
        centres = ModelConfig.from_dict(spec.get("config", {})).soft_label.centres()
        return lambda outputs: expected_value(outputs[age_tm.output_name], centres)
    return lambda outputs: descale(age_tm, np.asarray(outputs[age_tm.output_name], np.float64)).reshape(-1)


def predict_ages(args, paths: list, skipped) -> pd.DataFrame:
    """``predicted, age`` of every readable sample (index: sample id); unreadable ones go to ``skipped``."""
    from ml4ge.models.artifacts import load_model
    from ml4ge.pipeline import iterate_batches
    from ml4ge.progress import progress

    input_tmaps = resolve_all(args.input_tensors, args.tensormap_prefix)
    (age_tm,) = resolve_all(args.output_tensors, args.tensormap_prefix)
    model = load_model(args.model_file, compile=False)
    readout, rows = age_readout(model, age_tm), []
    with progress(total=len(paths), description="brain_age", unit="sample") as bar:
        for ids, inputs, outputs in iterate_batches(paths, input_tmaps, [age_tm], args.batch_size,
                                                    num_workers=args.num_workers, skipped=skipped):
            predicted = readout(model.predict_on_batch(inputs))
            ages = descale_ages(age_tm, outputs[age_tm.output_name])
            rows += [(i, float(p), float(a)) for i, p, a in zip(ids, predicted, ages, strict=True)]
            bar.update(len(ids))
    return pd.DataFrame(rows, columns=["sample_id", "predicted", "age"]).set_index("sample_id")


def descale_ages(age_tm, values) -> np.ndarray:
    """Chronological ages in years from the age map's (possibly normalised) values."""
    from ml4ge.recipes.infer import descale

    return descale(age_tm, np.asarray(values, np.float64)).reshape(-1)


def sexes(paths: list) -> pd.Series:
    """``sex`` (0/1) of each file holding the catalogue's ``sex`` map; NaN for the others."""
    from ml4ge.hd5 import open_sample, sample_id_from_path
    from ml4ge.recipes.infer import actual
    from ml4ge.tensormaps.phenotypes import sex

    values = {}
    for path in paths:
        with open_sample(path) as hd5:
            found = actual(sex, hd5, sample_id_from_path(path))
        values[sample_id_from_path(path)] = float(np.argmax(found)) if found is not None else np.nan
    return pd.Series(values, name="sex")


def run(args: BrainAgeSettings) -> int:
    """Predict, correct, summarise and write every table and plot; returns 0.

    Raises:
        NoUsableSamplesError: if no sample could be read.
        ValueError: for a correction set that cannot be fitted (see :func:`ml4ge.brain_age.fit_bias_correction`).
    """
    from ml4ge.hd5 import hd5_paths, sample_id_from_path
    from ml4ge.latents import cohort_paths
    from ml4ge.pipeline import SkippedSamples

    folder, correction = run_folder(args), correction_ids(args)
    evaluated_paths = [p for p in cohort_paths(args.tensors, args.sample_csv) if sample_id_from_path(p) not in
                       correction]
    paths = sorted({*evaluated_paths, *(p for p in hd5_paths(args.tensors) if sample_id_from_path(p) in correction)})
    skipped = SkippedSamples(folder)
    try:
        frame = predict_ages(args, paths, skipped)
    finally:
        skipped.write()
    evaluated = [sample_id_from_path(p) for p in evaluated_paths]
    fit_set = frame.index[frame.index.isin(correction)]
    bias = fit_bias_correction(frame.loc[fit_set, "predicted"], frame["age"], evaluated)
    table = brain_age_table(frame["predicted"], frame["age"], bias)
    table.insert(0, "correction_set", table.index.isin(fit_set))
    table.insert(0, "split", split_labels(args.model_file, table.index))
    write_outputs(args, folder, table, bias, paths)
    return 0


def write_outputs(args, folder: Path, table: pd.DataFrame, bias, paths: list) -> None:
    """The per-sample, summary, BAG and covariate tables, the correction's record and the plot."""
    run_id = args.id
    write_table(table.reset_index().round(4), folder / f"brain_age_{run_id}.tsv")
    summary = split_summary(table)
    write_table(summary.round(4), folder / f"brain_age_summary_{run_id}.tsv")
    record = {**bias.as_dict(), "fit_set": sorted(table.index[table.correction_set])}
    write_text(folder / f"bias_correction_{run_id}.json", json.dumps(record, indent=2) + "\n")
    evaluated = table[~table.correction_set]
    write_table(evaluated[["bag"]].round(6).reset_index(), folder / f"bag_{run_id}.tsv")
    kept = set(evaluated.index)
    covariates = evaluated[["age"]].join(sexes([p for p in paths if Path(p).stem in kept]))
    write_table(covariates.dropna(axis=1, how="all").reset_index(), folder / f"bag_covariates_{run_id}.tsv")
    plot_brain_age(table, folder / f"brain_age_{run_id}.png", f"brain age ({args.id})")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
