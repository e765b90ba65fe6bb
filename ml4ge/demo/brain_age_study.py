"""The demo's brain-age study (``--mode demo --study brain_age``; issue 17): SFCN, bias-corrected BAG, its GWAS.

The cohort carries an ageing SNP (:mod:`ml4ge.demo.ageing`, 3 years per allele). Stages, beside the generic ones
(the study's T1 autoencoder ``ae_t1``, its GWAS and compare):

- ``train_sfcn``: SFCN reduced for the demo grid (preset ``sfcn_small``; the seed's ``sfcn`` at 1 mm), predicting
  ``age`` from the T1 divided by its mean, on the soft-label bins 40-85 years; Adam at 2e-3 in batches of 4 (the
  seed fine-tuned a pretrained model at 3e-4, which does not learn from scratch in the demo's few epochs).
- ``brain_age``: ``--mode brain_age`` with the correction fitted on SFCN's validation split, so that the train and
  test samples (the evaluated ones, whose BAG the GWAS uses) never enter their own correction.
- ``brain_age_baselines``: test MAE of SFCN beside ridge regressions (RidgeCV, standardised features) fitted on
  SFCN's train split: on ``ae_t1``'s latents and on the regional volumes of ``phenotypes.csv``; same test split.
- ``associate_bag``: GWAS of the BAG table with age and sex as covariates, and the truth row of the ageing SNP:
  its planted years, its measured t in the data (``truth.json``), its -log10 P for BAG and whether it is a hit.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ml4ge.atomic import write_table, write_text
from ml4ge.demo import truth as truth_checks
from ml4ge.demo.context import DemoRun, Stage, latent_table
from ml4ge.demo.recipe_runner import run_recipe

log = logging.getLogger(__name__)
STUDY = "brain_age"
SFCN_INPUTS = {"default": "ml4ge.demo.maps.t1_sfcn_3mm", "quick": "ml4ge.demo.maps.t1_sfcn_5mm",
               "full_resolution": "t1_sfcn"}
SFCN_PRESETS = {"default": "sfcn_small", "quick": "sfcn_small", "full_resolution": "sfcn"}
SOFT_LABEL_RANGE = (40.0, 85.0)  # the demo's ages are 45-80; the bins reach a few sigma beyond
SFCN_MIN_EPOCHS = 6  # twice the preset's epochs, at least 6 (the quick preset's 3 are too few to learn age)
SFCN_EPOCH_FACTOR = 2
# From scratch on a few hundred subjects the seed's fine-tuning rate (3e-4, batch 20) does not move in the demo's
# budget (the quick study's training MAE stayed at the spread of age after 6 epochs); batches of 8 at 2e-3 learn,
# and the rate halves after 2 epochs without a lower validation loss: at a constant rate the BatchNorm moving
# statistics trail the weights and the inference-mode MAE jumped between epochs (the best epoch is kept).
SFCN_LEARNING_RATE, SFCN_BATCH_SIZE, SFCN_LR_PATIENCE = 2e-3, 8, 2
SFCN_PATIENCE = 8  # early stopping: long enough for the rate to halve a few times after the best epoch
NON_REGIONAL = ("sample_id", "age", "sex")
MAE_COLUMNS = ["method", "features", "n_train", "n_test", "test_mae"]
NOT_LEARNT = "not_learnt.txt"
BAG_SPACE = "bag"  # associate's tables are <space>.<column>: the space bag, its one column bag


def _folder(run: DemoRun):
    return run.folder / STUDY


def sfcn_input(run: DemoRun) -> str:
    return SFCN_INPUTS.get(run.settings.preset, SFCN_INPUTS["default"])


def train_sfcn(run: DemoRun) -> None:
    from ml4ge.recipes.train import TrainSettings

    settings = run.settings
    run_recipe(TrainSettings(
        tensors=str(run.tensors), input_tensors=(sfcn_input(run),), output_tensors=("age",),
        encoder_blocks=("sfcn_encode",), merge_blocks=(), decoder_blocks=("soft_label",),
        model_preset=SFCN_PRESETS.get(settings.preset, "sfcn_small"), soft_label_range=SOFT_LABEL_RANGE,
        learning_rate=SFCN_LEARNING_RATE, lr_schedule="plateau", lr_patience=SFCN_LR_PATIENCE,
        epochs=max(SFCN_EPOCH_FACTOR * settings.epochs, SFCN_MIN_EPOCHS), batch_size=SFCN_BATCH_SIZE,
        patience=SFCN_PATIENCE, patience_style="ml4ge", id="sfcn",
        **run.common_settings()))
    import keras

    keras.backend.clear_session()


def brain_age(run: DemoRun) -> None:
    """``--mode brain_age`` on SFCN; a model that has not learnt age (no slope to correct by) is recorded in
    ``brain_age/not_learnt.txt`` and reported, and the baselines still run (there is then no BAG to associate)."""
    from ml4ge.brain_age import NotLearntError
    from ml4ge.recipes.brain_age import BrainAgeSettings

    sfcn = run.folder / "sfcn"
    settings = BrainAgeSettings(
        tensors=str(run.tensors), input_tensors=(sfcn_input(run),), output_tensors=("age",),
        model_file=str(sfcn / "sfcn.keras"), bias_correction_csv=str(sfcn / "valid.csv"),
        batch_size=max(run.settings.batch_size, 4), id=STUDY, **run.common_settings())
    try:
        run_recipe(settings)
    except NotLearntError as error:
        log.warning("SFCN has not learnt age, so there is no brain-age gap to associate: %s", error)
        write_text(_folder(run) / NOT_LEARNT, f"{error}\n")


def _ids(path) -> list[str]:
    from ml4ge.splits import read_ids

    return [str(i) for i in read_ids(path)]


def ridge_mae(features: pd.DataFrame, age: pd.Series, train: list[str], test: list[str]) -> float:
    """Test MAE of a ridge regression (standardised features, penalty chosen by RidgeCV on the train split)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 15)))
    model.fit(features.loc[train].to_numpy(float), age.loc[train].to_numpy(float))
    return float(np.mean(np.abs(model.predict(features.loc[test].to_numpy(float)) - age.loc[test].to_numpy(float))))


def baselines(run: DemoRun) -> None:
    """``brain_age/brain_age_mae.tsv``: SFCN's test MAE (raw and bias-corrected) and the two ridge baselines'."""
    from ml4ge.compare import load_latents

    phenotypes = pd.read_csv(run.cohort / "phenotypes.csv", dtype={"sample_id": str}).set_index("sample_id")
    train = [i for i in _ids(run.folder / "sfcn" / "train.csv") if i in phenotypes.index]
    test = [i for i in _ids(run.folder / "sfcn" / "test.csv") if i in phenotypes.index]
    latents = load_latents(latent_table(run, "ae_t1", run.settings.t1))
    regional = phenotypes.drop(columns=[c for c in NON_REGIONAL if c in phenotypes.columns])
    in_latents = [i for i in test if i in latents.index]
    rows = [*sfcn_rows(run, len(train), len(test)),
            ("ridge_ae_t1", f"ae_t1 latents ({latents.shape[1]})", len(train), len(in_latents),
             ridge_mae(latents, phenotypes.age, [i for i in train if i in latents.index], in_latents)),
            ("ridge_regional", f"regional volumes ({', '.join(regional.columns)})", len(train), len(test),
             ridge_mae(regional, phenotypes.age, train, test))]
    write_table(pd.DataFrame(rows, columns=MAE_COLUMNS).round(3), _folder(run) / "brain_age_mae.tsv")


def sfcn_rows(run: DemoRun, n_train: int, n_test: int) -> list[tuple]:
    """SFCN's test MAE raw (its training run's test metric) and bias-corrected (NaN when it has not learnt age)."""
    metrics = pd.read_csv(run.folder / "sfcn" / "test_metrics.tsv", sep="\t").set_index("metric")["value"]
    table_path = _folder(run) / f"brain_age_{STUDY}.tsv"
    corrected = np.nan
    if table_path.is_file():
        table = pd.read_csv(table_path, sep="\t", dtype={"sample_id": str})
        corrected = float(np.mean(np.abs(table[table.split == "test"].bag)))
    return [("sfcn", "T1 volume (raw prediction)", n_train, n_test, float(metrics["age_mae"])),
            ("sfcn_corrected", "T1 volume (bias-corrected)", n_train, n_test, corrected)]


def associate_bag(run: DemoRun) -> None:
    """GWAS of BAG (age and sex as covariates) and ``brain_age/ageing_truth.tsv``."""
    from ml4ge.recipes.associate import AssociateSettings

    folder = _folder(run)
    if (folder / NOT_LEARNT).is_file():
        write_table(ageing_truth(run, None), folder / "ageing_truth.tsv")
        return
    associated = run_recipe(AssociateSettings(
        genotypes=str(run.cohort / "genotypes"), covariates_file=str(folder / f"bag_covariates_{STUDY}.tsv"),
        clump_kb=truth_checks.WINDOW_KB, latent_tables=(f"bag={folder / f'bag_{STUDY}.tsv'}",), id="associate_bag",
        **run.common_settings()))
    write_table(ageing_truth(run, associated), folder / "ageing_truth.tsv")


def bag_sumstats(sumstats, snp_id: str) -> pd.DataFrame:
    """The ``ID, LOG10P, BETA`` row of ``snp_id`` in the BAG table's summary statistics (``bag.bag.glm.linear.gz``,
    or the uncompressed name), empty when the SNP was not tested.

    Raises:
        FileNotFoundError: naming the folder, when it holds no BAG summary statistics.
    """
    from ml4ge.genetics.sumstats import file_name, read_sumstats

    paths = [sumstats / file_name(BAG_SPACE, BAG_SPACE, compressed) for compressed in (True, False)]
    path = next((p for p in paths if p.is_file()), None)
    if path is None:
        raise FileNotFoundError(f"{sumstats} holds no {paths[0].name} (or {paths[1].name}); run associate on the "
                                "BAG table.")
    table = read_sumstats(path, usecols=["ID", "LOG10P", "BETA"])
    return table[table.ID.astype(str) == str(snp_id)]


def ageing_truth(run: DemoRun, associated) -> pd.DataFrame:
    """One row: the ageing SNP's planted years, its measured t in the data, its BAG association and hit status."""
    snp = truth_checks.load_truth(run.cohort)["ageing_snp"]
    measured = {f"t_{trait}": values["measured_t"] for trait, values in snp["measured"].items()}
    row = {"id": snp["id"], "years_per_allele": snp["years_per_allele"], "maf": snp["maf"], **measured,
           "bag_beta_per_allele": np.nan, "bag_log10p": np.nan, "genome_wide_hit": "not tested (no BAG)"}
    if associated is not None:
        stats = bag_sumstats(associated / "sumstats", snp["id"])
        hits = pd.read_csv(associated / "associate_hits.tsv", sep="\t", dtype={"ID": str, "CHROM": str})
        near = hits[(hits.CHROM.astype(str) == str(snp["chrom"])) & ((hits.POS - snp["pos"]).abs()
                                                                     <= truth_checks.WINDOW_KB * 1e3)]
        row |= {"bag_beta_per_allele": round(float(stats.BETA.iloc[0]), 3) if len(stats) else np.nan,
                "bag_log10p": round(float(stats.LOG10P.iloc[0]), 2) if len(stats) else np.nan,
                "genome_wide_hit": bool(not near.empty)}
    return pd.DataFrame([row])


def report_section(run: DemoRun) -> str:
    from ml4ge.demo.report import image, markdown_table

    folder = _folder(run)
    lines = ["## Brain age (SFCN)", ""]
    if (folder / NOT_LEARNT).is_file():
        lines += [f"**SFCN did not learn age**, so there is no brain-age gap: {(folder / NOT_LEARNT).read_text()}", ""]
    if (folder / "brain_age_mae.tsv").is_file():
        lines += ["Test MAE in years, same test split:", "",
                  markdown_table(pd.read_csv(folder / "brain_age_mae.tsv", sep="\t"), 2), ""]
    if (folder / f"brain_age_summary_{STUDY}.tsv").is_file():
        lines += ["Per split (correction fitted on the validation split):", "",
                  markdown_table(pd.read_csv(folder / f"brain_age_summary_{STUDY}.tsv", sep="\t"), 3), ""]
    if (folder / "ageing_truth.tsv").is_file():
        lines += ["Ageing SNP (GWAS of BAG with age and sex as covariates):", "",
                  markdown_table(pd.read_csv(folder / "ageing_truth.tsv", sep="\t"), 2), ""]
    lines.append(image(run, folder / f"brain_age_{STUDY}.png", "brain age against age"))
    return "\n".join(lines)


def stages() -> dict[str, Stage]:
    """The study's own stages, by name (registered by :mod:`ml4ge.demo.pipeline`)."""
    return {"train_sfcn": Stage(25, "train", train_sfcn, study=STUDY),
            "brain_age": Stage(36, "brain_age", brain_age, study=STUDY),
            "brain_age_baselines": Stage(37, "brain_age", baselines, study=STUDY),
            "associate_bag": Stage(41, "associate", associate_bag, report_section, study=STUDY)}

