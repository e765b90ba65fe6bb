"""Command-line flags with ml4h's names: one table of definitions, and the parsers built from it.

:data:`FLAGS` holds every flag once: its ``--help`` group, default, help text and how argparse reads it. A recipe
declares the flags it uses as the fields of its settings class (:func:`flag_settings`: field name = flag name, the
default comes from the table), and :func:`build_parser` turns such a class into the parser of that mode only. This
module imports no recipe: the CLI hands it the settings class of the chosen mode.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ml4ge.defaults import DEFAULT_SEED
from ml4ge.models.config import CONV_STYLES, ConvConfig, DenseConfig, PairConfig
from ml4ge.models.predictor_config import PredictorConfig
from ml4ge.models.sfcn_config import SFCNConfig, SoftLabelConfig
from ml4ge.models.vae_config import VAEConfig
from ml4ge.models.vit_config import ViTConfig
from ml4ge.modes import RECIPES
from ml4ge.registry import UnknownNameError, closest_matches
from ml4ge.training_settings import FLAG_DEFAULTS as TRAINING_DEFAULTS

CONV, DENSE, PAIR, VIT, VAE = ConvConfig(), DenseConfig(), PairConfig(), ViTConfig(), VAEConfig()
PREDICTOR = PredictorConfig()
SFCN, SOFT = SFCNConfig(), SoftLabelConfig()
RUN, DATA, MODEL, TRAINING = "run", "data", "model", "training"
INFERENCE, ASSOCIATION = "inference and comparison", "genetic association (associate)"
INTERPRETATION, DEMO = "interpretation of latent dimensions (interpret)", "demo cohort and end-to-end demo (demo)"
GROUPS = (RUN, DATA, MODEL, TRAINING, INFERENCE, ASSOCIATION, INTERPRETATION, DEMO)  # their order in --help


@dataclass(frozen=True)
class Bounds:
    """The values a numeric flag admits: ``low``/``high`` limits (None: none), each inclusive unless ``open_*``."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def admits(self, value: float) -> bool:
        if value != value:  # NaN is within no bounds.
            return False
        above = self.low is None or (value > self.low if self.open_low else value >= self.low)
        below = self.high is None or (value < self.high if self.open_high else value <= self.high)
        return above and below

    def describe(self) -> str:
        """``at least 1``, ``above 0``, ``in [0, 1)``."""
        if self.high is None:
            return f"{'above' if self.open_low else 'at least'} {self.low:g}"
        return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"


AT_LEAST_0, AT_LEAST_1, AT_LEAST_2 = Bounds(0), Bounds(1), Bounds(2)
POSITIVE, RATE = Bounds(0, open_low=True), Bounds(0, 1, open_high=True)
OPEN_UNIT = Bounds(0, 1, open_low=True, open_high=True)


@dataclass(frozen=True)
class Flag:
    """How one flag is read.

    Args:
        group: its ``--help`` section.
        default: typed (a tuple for a list); also the default of the settings field of the same name.
        help: the ``--help`` text.
        type: the value type (of each item for a list); by default the default's type, or str.
        nargs: argparse's nargs; ``"*"`` for a tuple default unless given.
        choices, metavar: as argparse's.
        repeat: the flag may be given several times, each adding one item (``--pairs A B --pairs C D``).
        bounds: the values a number (each number of a list) may take; checked before any work
            (:func:`out_of_bounds`).
    """

    group: str
    default: Any
    help: str
    type: Callable | None = None
    nargs: str | int | None = None
    choices: tuple | None = None
    metavar: str | tuple | None = None
    repeat: bool = False
    bounds: Bounds | None = None

    def argparse_options(self) -> dict[str, Any]:
        """Keywords of ``add_argument``: a False default makes a switch, a tuple default a list."""
        if self.default is False:
            return {"action": "store_true", "help": self.help}
        listed = isinstance(self.default, tuple)
        options = {"default": list(self.default) if listed else self.default, "help": self.help,
                   "type": self.type or (type(self.default) if self.default is not None and not listed else None),
                   "nargs": self.nargs or ("*" if listed and not self.repeat else None),
                   "choices": self.choices, "metavar": self.metavar, "action": "append" if self.repeat else None}
        return {key: value for key, value in options.items() if value is not None or key == "default"}

    def violation(self, name: str, value: Any) -> str | None:
        """What is wrong with ``value`` for ``--name``, or None when it is within :attr:`bounds`."""
        if self.bounds is None or value is None:
            return None
        values = value if isinstance(value, (list, tuple)) else (value,)
        bad = [item for item in values if isinstance(item, (int, float)) and not self.bounds.admits(item)]
        if not bad:
            return None
        each = "each value of " if isinstance(value, (list, tuple)) else ""
        return f"{each}--{name} must be {self.bounds.describe()}, got {bad[0]!r}."


FLAGS: dict[str, Flag] = {
    # run
    "output_folder": Flag(RUN, "./recipes_output/", "Runs are written to <output_folder>/<id>/."),
    "id": Flag(RUN, "no_id", "Name of the run; rerunning an id with the same flags resumes it. Modes share an id: "
                             "each records its flags in arguments_<mode>.json and appends to log.txt."),
    "random_seed": Flag(RUN, DEFAULT_SEED, "Seed for splits, shuffling and init."),
    "num_workers": Flag(RUN, min(os.cpu_count() or 1, 4),
                        "Worker processes for reading HD5 files and tensorizing (0: read in the main process).",
                        bounds=AT_LEAST_0),
    "overwrite": Flag(RUN, False, "Start a mode over in its run folder, with the same or other flags (without it "
                                  "a rerun with other flags is refused, one with the same flags resumes): replace "
                                  "its arguments_<mode>.json; train: remove the checkpoints, training log and split "
                                  "it would resume from; tensorize: replace existing HD5 files."),
    # data
    "tensors": Flag(DATA, None, "Folder of <sample_id>.hd5 files (the output folder for tensorize)."),
    "input_tensors": Flag(DATA, (), "TensorMaps fed to the model."),
    "output_tensors": Flag(DATA, (), "TensorMaps the model predicts."),
    "optional_tensors": Flag(DATA, (), "train/infer_encoders: maps a sample may lack; it is kept with zeros and a "
                                       "presence flag (fusions use its present modalities, the loss of an absent "
                                       "output weighs 0)."),
    "tensormap_prefix": Flag(DATA, None, "Python package holding your TensorMaps; names like module.variable "
                                         "resolve under it."),
    "sample_csv": Flag(DATA, None, "Only samples listed in this CSV (first or sample_id column)."),
    "train_csv": Flag(DATA, None, "Samples assigned to train."),
    "valid_csv": Flag(DATA, None, "Samples assigned to valid."),
    "test_csv": Flag(DATA, None, "Samples assigned to test."),
    "target_csv": Flag(DATA, None, "train --family cvae: the target samples (e.g. patients); half of every batch."),
    "background_csv": Flag(DATA, None, "train --family cvae: the background samples (e.g. controls); the other "
                                       "half of every batch."),
    "valid_ratio": Flag(DATA, 0.1, "Fraction of samples for validation.", bounds=RATE),
    "test_ratio": Flag(DATA, 0.1, "Fraction of samples for testing.", bounds=RATE),
    "cache": Flag(DATA, False, "Keep tensors in memory after the first epoch."),
    "manifest": Flag(DATA, None, "tensorize: CSV of sample_id, tensor, path[, instance] rows (paths relative to "
                                 "the manifest's folder)."),
    "phenotype_csv": Flag(DATA, None, "tensorize: CSV with a sample id column and one column per scalar."),
    "resample": Flag(DATA, False, "tensorize: store volumes resampled (one isotropic zoom, centred) to the "
                                  "TensorMap shape; by default they are stored as read, at full resolution."),
    "register_to": Flag(DATA, (), "tensorize: rigidly register every volume of TENSOR to the skull-stripped NIfTI "
                                  "TEMPLATE (e.g. t1=MNI152_T1_1mm_brain.nii.gz) and store it on the template's "
                                  "grid.", metavar="TENSOR=TEMPLATE"),
    "template_tensor": Flag(DATA, None, "build_template: the manifest tensor whose volumes make the template "
                                        "(default: the manifest's only tensor)."),
    "template_iterations": Flag(DATA, 4, "build_template: rounds of rigid registration to the running mean.",
                                bounds=AT_LEAST_1),
    # model: the defaults are the block configs' own (one source for Python and the command line)
    "family": Flag(MODEL, "autoencoder", "Model family (autoencoder: encoders -> merge -> decoders, or encoders -> "
                                         "a supervised head; vae: a Gaussian latent with a scheduled KL weight; "
                                         "rae: a deterministic code with 0.5 ||z||^2; cvae: salient and background "
                                         "codes of target and background samples, with a total-correlation "
                                         "discriminator; cvae_rae: the cvae with deterministic codes)."),
    "encoder_blocks": Flag(MODEL, ("conv_encode",), "Encoder block names, or encoder_<tmap>.keras files of a "
                                                    "trained model."),
    "merge_blocks": Flag(MODEL, ("concat",), "Merge block names."),
    "decoder_blocks": Flag(MODEL, ("conv_decode",), "Decoder block names, or decoder_<tmap>.keras files of a "
                                                    "trained model."),
    "model_preset": Flag(MODEL, None, "A named architecture (e.g. udip)."),
    "model_file": Flag(MODEL, None, "A trained <id>.keras model (for inference or fine-tuning)."),
    "activation": Flag(MODEL, CONV.activation, "Activation of hidden layers."),
    "conv_layers": Flag(MODEL, CONV.layers, "Widths of the stem convolutions.", type=int, bounds=AT_LEAST_1),
    "conv_width": Flag(MODEL, CONV.kernel_1d, "Kernel size for 1-D maps.", type=int, bounds=AT_LEAST_1),
    "conv_x": Flag(MODEL, CONV.kernel_x, "Kernel size along x.", type=int, bounds=AT_LEAST_1),
    "conv_y": Flag(MODEL, CONV.kernel_y, "Kernel size along y.", type=int, bounds=AT_LEAST_1),
    "conv_z": Flag(MODEL, CONV.kernel_z, "Kernel size along z.", type=int, bounds=AT_LEAST_1),
    "conv_normalize": Flag(MODEL, None, "Normalization after convolutions (batch_norm, ...)."),
    "conv_regularize": Flag(MODEL, None, "Regularization after convolutions (dropout, ...)."),
    "conv_regularize_rate": Flag(MODEL, 0.0, "Rate of --conv_regularize.", bounds=RATE),
    "dense_blocks": Flag(MODEL, CONV.stages, "Widths of conv stages.", type=int, bounds=AT_LEAST_1),
    "block_size": Flag(MODEL, CONV.block_size, "Convolutions per stage.", bounds=AT_LEAST_1),
    "dense_layers": Flag(MODEL, DENSE.widths, "Dense widths after the convolutions; the last is the latent size.",
                         type=int, bounds=AT_LEAST_1),
    "dense_normalize": Flag(MODEL, None, "Normalization after dense layers."),
    "dense_regularize": Flag(MODEL, None, "Regularization after dense layers."),
    "dense_regularize_rate": Flag(MODEL, 0.0, "Rate of --dense_regularize.", bounds=RATE),
    "pool_type": Flag(MODEL, CONV.pool_type, "Pooling between stages.", choices=("max", "average")),
    "decoder_template": Flag(MODEL, False, "Conv decoders add a learned template image to their output, set to the "
                                           "training split's mean volume before training (they start at the cohort "
                                           "mean), and conv encoders subtract that mean, frozen, from their input "
                                           "(they see differences from it)."),
    "pool_x": Flag(MODEL, CONV.pool[0], "Pooling factor along x.", bounds=AT_LEAST_1),
    "pool_y": Flag(MODEL, CONV.pool[1], "Pooling factor along y.", bounds=AT_LEAST_1),
    "pool_z": Flag(MODEL, CONV.pool[2], "Pooling factor along z.", bounds=AT_LEAST_1),
    "vit_patch": Flag(MODEL, VIT.patch, "vit_encode/vit_decode: patch size along x, y, z (a 2-D map uses x y, a "
                                        "1-D map x).", type=int, nargs=3, metavar=("X", "Y", "Z"),
                      bounds=AT_LEAST_1),
    "vit_width": Flag(MODEL, VIT.width, "vit_encode: token width, also the latent size (mean of the tokens).",
                      bounds=AT_LEAST_1),
    "vit_depth": Flag(MODEL, VIT.depth, "vit_encode: transformer blocks.", bounds=AT_LEAST_1),
    "vit_heads": Flag(MODEL, VIT.heads, "vit_encode: attention heads (must divide --vit_width).", bounds=AT_LEAST_1),
    "vit_mlp_ratio": Flag(MODEL, VIT.mlp_ratio, "vit_encode/vit_decode: MLP width as a multiple of the token width.",
                          bounds=AT_LEAST_1),
    "vit_decoder_width": Flag(MODEL, VIT.decoder_width, "vit_decode: token width.", bounds=AT_LEAST_1),
    "vit_decoder_depth": Flag(MODEL, VIT.decoder_depth, "vit_decode: transformer blocks.", bounds=AT_LEAST_1),
    "vit_decoder_heads": Flag(MODEL, VIT.decoder_heads, "vit_decode: attention heads (must divide "
                                                        "--vit_decoder_width).", bounds=AT_LEAST_1),
    "sfcn_channels": Flag(MODEL, SFCN.channels, "sfcn_encode: widths of the conv 3 -> BN -> max-pool -> ReLU "
                                                "stages (SFCN's five).", type=int, bounds=AT_LEAST_1),
    "sfcn_dropout": Flag(MODEL, SFCN.dropout, "sfcn_encode: dropout after global average pooling.", bounds=RATE),
    "soft_label_range": Flag(MODEL, (SOFT.start, SOFT.stop), "soft_label head: ages [START, STOP) cut into bins "
                                                             "(SFCN's 42 82; cover the cohort's ages).", type=float,
                             nargs=2, metavar=("START", "STOP")),
    "soft_label_width": Flag(MODEL, SOFT.width, "soft_label head: bin width in years.", bounds=POSITIVE),
    "soft_label_sigma": Flag(MODEL, SOFT.sigma, "soft_label head: SD in years of the Gaussian soft labels.",
                             bounds=POSITIVE),
    "pairs": Flag(MODEL, (), "train: input TensorMaps tied by the pair merge; compare: latent tables whose "
                             "fold-by-fold difference A - B is reported. Repeat for several pairs.",
                  nargs=2, metavar=("A", "B"), repeat=True),
    "pair_loss": Flag(MODEL, PAIR.loss, "Loss tying paired embeddings (contrastive_ml4h: ml4h's "
                                            "swapped-argument version, to reproduce published numbers).",
                      choices=("contrastive", "cosine", "euclid", "contrastive_ml4h")),
    "pair_loss_weight": Flag(MODEL, PAIR.weight, "Weight of the pair loss.", bounds=AT_LEAST_0),
    "pair_merge": Flag(MODEL, PAIR.merge, "Fusion of paired embeddings (dropout = DropFuse; dropout_ml4h: "
                                            "ml4h's, one modality per coordinate for the batch, random at inference).",
                       choices=("dropout", "average", "concat", "dropout_ml4h")),
    "alpha": Flag(MODEL, VAE.alpha, "vae/rae/cvae: weight of the reconstruction loss (a mean over elements); default: "
                                    "the elements of the largest output, i.e. the error summed over voxels.",
                  type=float, bounds=POSITIVE),
    "beta": Flag(MODEL, VAE.beta, "vae/cvae: weight of the KL term (rae: of 0.5 ||z||^2), times --beta_schedule's "
                                  "factor.", bounds=AT_LEAST_0),
    "beta_schedule": Flag(MODEL, VAE.schedule, "vae/rae/cvae: per-epoch factor of --beta: constant, warmup (linear "
                                               "from 0 over --beta_warmup_epochs), cyclical (Fu et al. 2019: "
                                               "--beta_cycles cycles over --epochs, each ramping over its first "
                                               "--beta_ratio) or explode_cycle (the seed's: constant for "
                                               "--beta_explode_epochs, then --beta_cycle_epochs-long cycles ramping "
                                               "over their first half)."),
    "beta_warmup_epochs": Flag(MODEL, VAE.warmup_epochs, "--beta_schedule warmup: epochs of the ramp.",
                               bounds=AT_LEAST_1),
    "beta_cycles": Flag(MODEL, VAE.cycles, "--beta_schedule cyclical: cycles over the run (M).", bounds=AT_LEAST_1),
    "beta_ratio": Flag(MODEL, VAE.ratio, "--beta_schedule cyclical: fraction of each cycle spent ramping (R).",
                       bounds=Bounds(0, 1, open_low=True)),
    "beta_cycle_epochs": Flag(MODEL, VAE.cycle_epochs, "--beta_schedule explode_cycle: epochs per cycle.",
                              bounds=AT_LEAST_2),
    "beta_explode_epochs": Flag(MODEL, VAE.explode_epochs, "--beta_schedule explode_cycle: epochs at --beta "
                                                           "before the first cycle.", bounds=AT_LEAST_0),
    "gamma": Flag(MODEL, VAE.gamma, "cvae: weight of the total-correlation term on the encoders (0: no "
                                    "discriminator is trained).", bounds=AT_LEAST_0),
    "salient_size": Flag(MODEL, VAE.salient_size, "cvae: size of the salient code s (target-only variation).",
                         bounds=AT_LEAST_1),
    "background_size": Flag(MODEL, VAE.background_size, "cvae: size of the background code z (shared "
                                                         "variation).", bounds=AT_LEAST_1),
    "predictor_stages": Flag(MODEL, PREDICTOR.stages, "predictor: filters of the residual 3-D CNN's stages (each "
                                                      "halves the grid; the seed's at 64^3).", type=int,
                             bounds=AT_LEAST_1),
    "predictor_width": Flag(MODEL, PREDICTOR.width, "predictor: the CNN's dense output width.", bounds=AT_LEAST_1),
    "predictor_l2": Flag(MODEL, PREDICTOR.l2, "predictor: scale of the L2 penalty mean(W^2) on every weight matrix "
                                              "(0: none).", bounds=AT_LEAST_0),
    "presence_inputs": Flag(MODEL, False, "predictor: the head also sees the presence flags of optional inputs."),
    "balance": Flag(MODEL, PREDICTOR.balance, "predictor, categorical targets: undersample the majority classes every "
                                              "epoch (the seed's), class_weights in the loss, or none.",
                    choices=("undersample", "class_weights", "none")),
    "sweep_inputs": Flag(MODEL, (), "sweep: input combinations, each A+B+... of --input_tensors names (default: "
                                    "every non-empty combination)."),
    "sweep_repeats": Flag(MODEL, 1, "sweep: models per cell, each with its own seed and split (mean and SD).",
                          bounds=AT_LEAST_1),
    # training
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
    "strategy": Flag(TRAINING, "auto", "Distribution strategy.",
                     choices=("auto", "default", "mirrored", "multi_worker", "tpu")),
    "mixed_precision": Flag(TRAINING, False, "bfloat16 on CPU/TPU, float16 on GPU."),
    "inspect_model": Flag(TRAINING, False, "Write an architecture summary and timing."),
    "keep_checkpoints": Flag(TRAINING, False, "train: keep checkpoints/ (the resume backup and the best weights) "
                                              "after the run finishes; without it a finished run deletes them "
                                              "(the model files hold the result; a rerun has nothing to redo)."),
    # ml4h parity (docs/ml4h_differences.md): the structure and semantics ml4h's flags have there, and ml4h flags
    # that ml4ge answers with what to use instead
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
    # inference and comparison
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
    # genetic association
    "genotypes": Flag(ASSOCIATION, None, "associate: PLINK 1 prefix of a .bed/.bim/.fam trio (IID = sample id)."),
    "covariates_file": Flag(ASSOCIATION, None, "associate: CSV/TSV of covariates keyed by sample id; --covariates "
                                               "picks columns (default: all)."),
    "replication_genotypes": Flag(ASSOCIATION, None, "associate: PLINK 1 prefix of a replication cohort."),
    "replication_samples": Flag(ASSOCIATION, None, "associate: CSV of sample ids held out of discovery to "
                                                   "replicate the hits in."),
    "maf": Flag(ASSOCIATION, 0.01, "associate: minimum minor-allele frequency.",
                bounds=Bounds(0, 0.5, open_high=True)),
    "geno": Flag(ASSOCIATION, 0.1, "associate: maximum missing-call rate per SNP.", bounds=Bounds(0, 1)),
    "rint": Flag(ASSOCIATION, False, "associate: rank-inverse-normal transform latents."),
    "impute": Flag(ASSOCIATION, False, "associate: mean-impute missing calls (default: drop the sample for that "
                                       "SNP, as PLINK)."),
    "log10_p": Flag(ASSOCIATION, False, "associate: write LOG10_P (-log10 P) instead of P in the summary "
                                        "statistics, as plink2 --glm log10."),
    "uncompressed_sumstats": Flag(ASSOCIATION, False, "associate: write the summary statistics uncompressed, as "
                                                      "plink2 does (<space>.<dimension>.glm.linear, no .gz): "
                                                      "about 2.7x the disk space, and a scan of many dimensions "
                                                      "spends a third less time (gzip is a third of it)."),
    "no_plots": Flag(ASSOCIATION, False, "associate: draw no Manhattan or Miami plot (PNG); the tables are the same. "
                                         "A plot costs a scan about half a second (matplotlib's import and "
                                         "drawing), which matters only for a small scan."),
    "snp_chunk": Flag(ASSOCIATION, 10_000, "associate: SNPs read and tested at once.", bounds=AT_LEAST_1),
    "clump_kb": Flag(ASSOCIATION, 250.0, "associate: half-width of a locus (kb).", bounds=AT_LEAST_0),
    "significance": Flag(ASSOCIATION, None, "associate: P threshold of a hit (default 5e-8 / number of latent "
                                            "dimensions).", type=float, bounds=OPEN_UNIT),
    "multivariate": Flag(ASSOCIATION, False, "associate: also the omnibus (MOSTest) and min-P test of each SNP over "
                                             "each whole latent space, calibrated on permuted genotypes."),
    "permuted_snps": Flag(ASSOCIATION, 20_000, "associate --multivariate: SNPs (spread over the genome) with permuted "
                                               "genotypes that calibrate the omnibus and min-P tests.",
                          bounds=Bounds(200)),
    "eigen_floor": Flag(ASSOCIATION, 1e-4, "associate --multivariate: eigenvalues of the dimensions' null "
                                           "correlation below this fraction of the largest are left out of the "
                                           "omnibus test (its regularisation).", bounds=OPEN_UNIT),
    "direction_traits": Flag(ASSOCIATION, (), "associate: --phenotypes columns whose direction in each latent space "
                                               "(cross-fitted ridge projection) gets its own GWAS."),
    "association_counts": Flag(ASSOCIATION, (), "compare: associate_counts.tsv of associate runs, to add their hit "
                                                "and locus counts."),
    # interpretation
    "interpret_samples": Flag(INTERPRETATION, 500, "interpret: subjects whose latents are perturbed (the first N "
                                                   "of the table or cohort).", bounds=AT_LEAST_2),
    "interpret_dimensions": Flag(INTERPRETATION, (), "interpret: 0-based latent dimensions to map (default: all).",
                                 type=int),
    "interpret_directions": Flag(INTERPRETATION, (), "interpret: name=directions/<space>-<trait>.tsv (written by "
                                                     "associate --direction_traits) to map, shifted along by "
                                                     "--perturb_sd SDs of its projection (no dimensions unless "
                                                     "--interpret_dimensions names some)."),
    "interpret_traits": Flag(INTERPRETATION, (), "interpret: --phenotypes columns; map the dimension most correlated "
                                                 "with each (after --covariates) and its direction."),
    "interpret_snps": Flag(INTERPRETATION, (), "interpret: SNP ids; map the dimension with the smallest association "
                                               "P of each (in --interpret_sumstats)."),
    "interpret_sumstats": Flag(INTERPRETATION, None, "interpret: <associate run>/sumstats/<space>, the summary "
                                                     "statistics of this latent space (for --interpret_snps)."),
    "perturb_sd": Flag(INTERPRETATION, 1.0, "interpret: shift of the perturbed dimension, in its standard "
                                            "deviations (negative: the other way; not 0)."),
    "smooth_sigma": Flag(INTERPRETATION, 3.0, "interpret: Gaussian sigma of the |t| maps, in voxels (0: none).",
                         bounds=AT_LEAST_0),
    "atlas": Flag(INTERPRETATION, None, "interpret: NIfTI label image ranking regions (resampled, nearest "
                                        "neighbour, onto the map grid when it lies elsewhere)."),
    "atlas_labels": Flag(INTERPRETATION, None, "interpret: TSV of label, name[, hemisphere] for --atlas."),
    "merge_hemispheres": Flag(INTERPRETATION, False, "interpret: join left and right regions of one structure."),
    "interpret_mask": Flag(INTERPRETATION, None, "interpret: NIfTI brain mask (default: the atlas's labelled "
                                                 "voxels, else the nonzero voxels of the mean input image)."),
    "lightbox_slices": Flag(INTERPRETATION, 8, "interpret: axial slices per lightbox PNG.", bounds=AT_LEAST_1),
    "interpret_top_regions": Flag(INTERPRETATION, 10, "interpret: regions per dimension in the combined "
                                                      "top-regions table.", bounds=AT_LEAST_1),
    "interpret_memory_mb": Flag(INTERPRETATION, 2048.0, "interpret: memory for running sums; more lets more "
                                                        "dimensions share a decoding pass.", bounds=POSITIVE),
    # demo
    "quick": Flag(DEMO, False, "demo: 80 subjects at 5 mm and 3 epochs per model (a few minutes on a CPU)."),
    "full_resolution": Flag(DEMO, False, "demo: 1 mm volumes (182x218x182) and UDIP-sized models, for a machine "
                                         "with a GPU."),
    "demo_subjects": Flag(DEMO, None, "demo: subjects to generate (default: 300, or 80 with --quick).", type=int,
                          bounds=AT_LEAST_1),
    "demo_epochs": Flag(DEMO, None, "demo: epochs per model (default: the preset's).", type=int, bounds=AT_LEAST_1),
    "demo_data": Flag(DEMO, None, "demo: reuse a cohort folder written by an earlier demo (<demo run>/data)."),
    # the names of ml4ge.demo.studies.STUDIES (a test checks that they match)
    "study": Flag(DEMO, "default", "demo: which models to train and compare: default (T1, T2, DropFuse and "
                                   "deep-brain autoencoders), vit (the CNN and the UDIP-ViT autoencoder of T1, "
                                   "each given the same CPU time), cvae (a contrastive VAE of patients against "
                                   "controls beside a plain VAE: do their spaces separate two planted disease "
                                   "subtypes?), legibility (predictors of sex and age from every input "
                                   "combination, T2 missing for 30 %) or brain_age (SFCN brain age on a cohort with "
                                   "an ageing SNP, ridge baselines, GWAS of the brain-age gap).",
                  choices=("brain_age", "cvae", "default", "legibility", "vit")),
}


def flag(name: str) -> Flag:
    """The definition of ``--name``.

    Raises:
        UnknownNameError: for a name not in :data:`FLAGS`, with the closest names.
    """
    try:
        return FLAGS[name]
    except KeyError:
        hint = closest_matches(name, FLAGS)
        raise UnknownNameError(f"Unknown flag --{name}." + (f" Did you mean {', '.join('--' + h for h in hint)}?"
                                                            if hint else "")) from None


# Settings classes --------------------------------------------------------------------------------------------
def typed(value: Any) -> Any:
    """A flag value as settings hold it: lists as tuples (nested too), paths as str."""
    if isinstance(value, (list, tuple)):
        return tuple(typed(item) for item in value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


class Settings:
    """Base of the settings classes: lists given in Python become tuples and paths str, as the parser gives them.

    ``mode`` names the recipe a class belongs to; ``rerun_may_change`` names flags that a rerun in the same run
    folder may change (how the work is done, not what it is); ``state_files`` names the files and folders of the
    run folder that a rerun resumes from, which ``--overwrite`` removes (the mode starts over instead of resuming
    a state that may belong to other flags).
    """

    mode: ClassVar[str] = ""
    rerun_may_change: ClassVar[frozenset[str]] = frozenset({"num_workers", "overwrite"})
    state_files: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            object.__setattr__(self, item.name, typed(getattr(self, item.name)))


def flag_settings(cls: type) -> type:
    """Make ``cls`` a frozen dataclass whose annotated fields are flags, each defaulting to its :data:`FLAGS` entry.

    Example:
        >>> @flag_settings
        ... class Folds(Settings):
        ...     folds: int
        >>> Folds().folds, Folds(folds=3).folds
        (5, 3)

    Raises:
        UnknownNameError: for a field that names no flag.
    """
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if not str(annotation).startswith(("ClassVar", "typing.ClassVar")) and name not in cls.__dict__:
            setattr(cls, name, flag(name).default)
    return dataclass(frozen=True)(cls)


def flag_names(settings_class) -> list[str]:
    """The flags of a settings class (or instance)."""
    return [item.name for item in dataclasses.fields(settings_class)]


def out_of_bounds(settings) -> list[str]:
    """A message for each flag of ``settings`` whose value is outside its :attr:`Flag.bounds`."""
    messages = (FLAGS[name].violation(name, getattr(settings, name)) for name in flag_names(settings))
    return [message for message in messages if message]


def settings_from_namespace(settings_class: type, namespace: argparse.Namespace):
    """The settings of ``settings_class`` read from a parsed namespace (other attributes are left out)."""
    return settings_class(**{name: getattr(namespace, name) for name in flag_names(settings_class)})


# Parsers -----------------------------------------------------------------------------------------------------
class FlagParser(argparse.ArgumentParser):
    """An argument parser whose errors are two lines (what is wrong, where the help is), exit status 2."""

    def __init__(self, *args, hint: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.hint = hint

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n{self.hint}\n")


def add_flags(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    """Add ``--name`` for every name, in :data:`FLAGS` order, under the groups of :data:`GROUPS` in order."""
    wanted = set(names)
    for title in GROUPS:
        members = [name for name, item in FLAGS.items() if name in wanted and item.group == title]
        if members:
            group = parser.add_argument_group(title)
            for name in members:
                group.add_argument(f"--{name}", **FLAGS[name].argparse_options())


def build_parser(settings_class: type | None = None) -> argparse.ArgumentParser:
    """The parser of one mode: ``--mode`` and the fields of ``settings_class``, grouped, run flags first.

    Without a class: every flag of every mode (what ``parse_args`` returns then has every attribute).
    """
    if settings_class is None:
        parser = FlagParser(prog="ml4ge", description="ml4ge recipes: tensorize, train, infer and compare learned "
                                                      "representations.", hint="ml4ge --help lists the modes.")
        parser.add_argument("--mode", required=True, help=f"Recipe to run: {', '.join(RECIPES.names())}.")
        add_flags(parser, FLAGS)
        return parser
    mode = settings_class.mode
    parser = FlagParser(prog=f"ml4ge --mode {mode}", usage=f"ml4ge --mode {mode} [flags]",
                        description=f"{mode}: {RECIPES.get(mode).summary}.",
                        hint=f"ml4ge --mode {mode} --help lists the flags of this mode.")
    parser.add_argument("--mode", required=True, choices=[mode], help=argparse.SUPPRESS)
    add_flags(parser, flag_names(settings_class))
    return parser


def run_folder(settings) -> Path:
    """``<output_folder>/<id>/``, created."""
    folder = Path(settings.output_folder) / settings.id
    folder.mkdir(parents=True, exist_ok=True)
    return folder
