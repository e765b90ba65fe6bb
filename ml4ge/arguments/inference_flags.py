"""The flags of inference and comparison (infer, infer_encoders, brain_age, compare, evaluate_groups):
``inference and comparison`` in ``--help``.
"""

from __future__ import annotations

from ml4ge.arguments.flag import AT_LEAST_0, AT_LEAST_1, AT_LEAST_2, INFERENCE, Flag

INFERENCE_FLAGS: dict[str, Flag] = {
    "tsv_style": Flag(INFERENCE, "standard", "genetics writes FID and IID columns for PLINK/REGENIE.",
                      choices=("standard", "genetics")),
    "shard": Flag(INFERENCE, None, "i/n (0-based): infer_encoders writes the i-th of n disjoint shards of samples."),
    "inference_format": Flag(INFERENCE, "nifti", "infer: file format of predicted volumes and images.",
                             choices=("nifti", "hd5")),
    "bias_correction_csv": Flag(INFERENCE, None, "brain_age: samples the linear bias correction is fitted on "
                                                 "(healthy controls, none of them evaluated; default: the model's "
                                                 "training split, less the non-controls of --controls_csv)."),
    "controls_csv": Flag(INFERENCE, None, "brain_age: the healthy controls; the default bias-correction set is the "
                                          "training split's controls."),
    "latent_tables": Flag(INFERENCE, (), "compare, evaluate_groups: name=path latent TSVs."),
    "phenotypes": Flag(INFERENCE, None, "compare: CSV/TSV of phenotypes keyed by sample id; evaluate_groups: "
                                        "the group labels (--group_column); associate: the --direction_traits."),
    "covariates": Flag(INFERENCE, (), "compare: phenotype columns used as covariates; interpret: those adjusted for "
                                      "by --interpret_traits."),
    "folds": Flag(INFERENCE, 5, "compare: cross-validation folds.", bounds=AT_LEAST_2),
    "group_column": Flag(INFERENCE, "group", "evaluate_groups: the --phenotypes column holding each sample's group."),
    "groups": Flag(INFERENCE, (), "evaluate_groups: score only samples of these groups (default: every group)."),
    "gmm_components": Flag(INFERENCE, 0, "evaluate_groups: Gaussian-mixture clusters (0: one per group).",
                           bounds=AT_LEAST_0),
    "gmm_fits": Flag(INFERENCE, 100, "evaluate_groups: Gaussian-mixture fits the NMI is averaged over (the "
                                     "seed's 100).", bounds=AT_LEAST_1),
}
