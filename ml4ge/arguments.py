"""Command-line arguments with ml4h's flag names, grouped in ``--help``, validated before any work starts."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ml4ge.atomic import write_text
from ml4ge.recipes import RECIPES
from ml4ge.training_settings import FLAG_DEFAULTS as TRAINING_DEFAULTS

DEFAULT_SEED = 12878


def _add_run(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run")
    group.add_argument("--mode", required=True, help=f"Recipe to run: {', '.join(RECIPES.names())}.")
    group.add_argument(
        "--output_folder", default="./recipes_output/", help="Runs are written to <output_folder>/<id>/."
    )
    group.add_argument("--id", default="no_id", help="Name of the run; rerunning an id resumes it.")
    group.add_argument("--random_seed", type=int, default=DEFAULT_SEED, help="Seed for splits, shuffling and init.")
    group.add_argument("--num_workers", type=int, default=min(os.cpu_count() or 1, 4),
                       help="Worker processes for reading HD5 files and tensorizing (0: read in the main process).")
    group.add_argument("--overwrite", action="store_true", help="Let tensorize replace existing HD5 files.")


def _add_data(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--tensors", help="Folder of <sample_id>.hd5 files (the output folder for tensorize).")
    group.add_argument("--input_tensors", nargs="*", default=[], help="TensorMaps fed to the model.")
    group.add_argument("--output_tensors", nargs="*", default=[], help="TensorMaps the model predicts.")
    group.add_argument("--optional_tensors", nargs="*", default=[],
                       help="train/infer_encoders: maps a sample may lack; it is kept with zeros and a presence flag "
                            "(the fusion uses its present modalities, the loss of an absent output weighs 0).")
    group.add_argument("--tensormap_prefix", default=None,
                       help="Python package holding your TensorMaps; names like module.variable resolve under it.")
    group.add_argument("--sample_csv", help="Only samples listed in this CSV (first or sample_id column).")
    group.add_argument("--train_csv", help="Samples assigned to train.")
    group.add_argument("--valid_csv", help="Samples assigned to valid.")
    group.add_argument("--test_csv", help="Samples assigned to test.")
    group.add_argument("--valid_ratio", type=float, default=0.1, help="Fraction of samples for validation.")
    group.add_argument("--test_ratio", type=float, default=0.1, help="Fraction of samples for testing.")
    group.add_argument("--cache", action="store_true", help="Keep tensors in memory after the first epoch.")
    group.add_argument("--manifest", help="tensorize: CSV of sample_id, tensor, path[, instance] rows "
                                          "(paths relative to the manifest's folder).")
    group.add_argument("--phenotype_csv", help="tensorize: CSV with a sample id column and one column per scalar.")
    group.add_argument("--resample", action="store_true",
                       help="tensorize: store volumes resampled (one isotropic zoom, centred) to the TensorMap "
                            "shape; by default they are stored as read, at full resolution.")
    group.add_argument("--register_to", nargs="*", default=[], metavar="TENSOR=TEMPLATE",
                       help="tensorize: rigidly register every volume of TENSOR to the skull-stripped NIfTI "
                            "TEMPLATE (e.g. t1=MNI152_T1_1mm_brain.nii.gz) and store it on the template's grid.")


def _add_model(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--family", default="autoencoder",
                       help="Model family (autoencoder: encoders -> merge -> decoders, or a supervised head).")
    group.add_argument("--encoder_blocks", nargs="*", default=["conv_encode"],
                       help="Encoder block names, or encoder_<tmap>.keras files of a trained model.")
    group.add_argument("--merge_blocks", nargs="*", default=["concat"], help="Merge block names.")
    group.add_argument("--decoder_blocks", nargs="*", default=["conv_decode"],
                       help="Decoder block names, or decoder_<tmap>.keras files of a trained model.")
    group.add_argument("--model_preset", default=None, help="A named architecture (e.g. udip).")
    group.add_argument("--model_file", help="A trained <id>.keras model (for inference or fine-tuning).")
    group.add_argument("--activation", default="swish", help="Activation of hidden layers.")
    group.add_argument("--conv_layers", nargs="*", type=int, default=[32], help="Widths of the stem convolutions.")
    group.add_argument("--conv_width", nargs="*", type=int, default=[71], help="Kernel size for 1-D maps.")
    group.add_argument("--conv_x", nargs="*", type=int, default=[3], help="Kernel size along x.")
    group.add_argument("--conv_y", nargs="*", type=int, default=[3], help="Kernel size along y.")
    group.add_argument("--conv_z", nargs="*", type=int, default=[2], help="Kernel size along z.")
    group.add_argument("--conv_normalize", default=None, help="Normalization after convolutions (batch_norm, ...).")
    group.add_argument("--conv_regularize", default=None, help="Regularization after convolutions (dropout, ...).")
    group.add_argument("--conv_regularize_rate", type=float, default=0.0, help="Rate of --conv_regularize.")
    group.add_argument("--dense_blocks", nargs="*", type=int, default=[32, 32, 32], help="Widths of conv stages.")
    group.add_argument("--block_size", type=int, default=3, help="Convolutions per stage.")
    group.add_argument("--dense_layers", nargs="*", type=int, default=[256],
                       help="Dense widths after the convolutions; the last is the latent size.")
    group.add_argument("--dense_normalize", default=None, help="Normalization after dense layers.")
    group.add_argument("--dense_regularize", default=None, help="Regularization after dense layers.")
    group.add_argument("--dense_regularize_rate", type=float, default=0.0, help="Rate of --dense_regularize.")
    group.add_argument("--pool_type", default="max", choices=["max", "average"], help="Pooling between stages.")
    group.add_argument("--decoder_template", action="store_true",
                       help="Conv decoders add a learned template image to their output, set to the training "
                            "split's mean volume before training (they start at the cohort mean), and conv "
                            "encoders subtract that mean, frozen, from their input (they see differences from it).")
    group.add_argument("--pool_x", type=int, default=2, help="Pooling factor along x.")
    group.add_argument("--pool_y", type=int, default=2, help="Pooling factor along y.")
    group.add_argument("--pool_z", type=int, default=1, help="Pooling factor along z.")
    group.add_argument("--pairs", nargs=2, action="append", default=[], metavar=("A", "B"),
                       help="Input TensorMaps tied by the pair merge; repeat for several pairs.")
    group.add_argument("--pair_loss", default="contrastive", choices=["contrastive", "cosine", "euclid"],
                       help="Loss tying paired embeddings.")
    group.add_argument("--pair_loss_weight", type=float, default=1.0, help="Weight of the pair loss.")
    group.add_argument("--pair_merge", default="dropout", choices=["dropout", "average", "concat"],
                       help="Fusion of paired embeddings (dropout = DropFuse).")


def _add_training(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--batch_size", type=int, default=8, help="Global batch size (split across replicas).")
    group.add_argument("--epochs", type=int, default=10, help="Maximum number of epochs.")
    group.add_argument("--training_steps", type=int, default=0, help="Steps per epoch; 0 = one pass over train.")
    group.add_argument("--validation_steps", type=int, default=0, help="Validation steps; 0 = one pass.")
    group.add_argument("--test_steps", type=int, default=0, help="Test steps; 0 = one pass.")
    group.add_argument("--patience", type=int, default=8, help="Epochs without improvement before stopping.")
    group.add_argument("--learning_rate", type=float, default=TRAINING_DEFAULTS["learning_rate"],
                       help="Initial learning rate (a --model_preset brings its own unless this is given).")
    group.add_argument("--optimizer", default=TRAINING_DEFAULTS["optimizer"], help="Keras optimizer name.")
    group.add_argument("--lr_schedule", default=TRAINING_DEFAULTS["lr_schedule"],
                       help="Learning-rate schedule: plateau (x --lr_factor after --lr_patience epochs without a "
                            "lower val_loss), step (x --lr_factor every --lr_step_epochs), cosine (warm-up of "
                            "--lr_warmup_epochs, then cosine decay to --lr_min) or constant.")
    group.add_argument("--lr_factor", type=float, default=TRAINING_DEFAULTS["lr_factor"],
                       help="plateau/step: factor applied to the learning rate.")
    group.add_argument("--lr_patience", type=int, default=TRAINING_DEFAULTS["lr_patience"],
                       help="plateau: epochs without improvement before lowering (default: half of --patience).")
    group.add_argument("--lr_min", type=float, default=TRAINING_DEFAULTS["lr_min"],
                       help="Floor of the learning rate (plateau, step, cosine).")
    group.add_argument("--lr_step_epochs", type=int, default=TRAINING_DEFAULTS["lr_step_epochs"],
                       help="step: epochs between reductions.")
    group.add_argument("--lr_warmup_epochs", type=int, default=TRAINING_DEFAULTS["lr_warmup_epochs"],
                       help="cosine: epochs of linear warm-up.")
    group.add_argument("--strategy", default="auto", choices=["auto", "default", "mirrored", "multi_worker", "tpu"],
                       help="Distribution strategy.")
    group.add_argument("--mixed_precision", action="store_true", help="bfloat16 on CPU/TPU, float16 on GPU.")
    group.add_argument("--inspect_model", action="store_true", help="Write an architecture summary and timing.")


def _add_inference(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("inference and comparison")
    group.add_argument("--tsv_style", default="standard", choices=["standard", "genetics"],
                       help="genetics writes FID and IID columns for PLINK/REGENIE.")
    group.add_argument("--shard", default=None,
                       help="i/n (0-based): infer_encoders writes the i-th of n disjoint shards of samples.")
    group.add_argument("--inference_format", default="nifti", choices=["nifti", "hd5"],
                       help="infer: file format of predicted volumes and images.")
    group.add_argument("--latent_tables", nargs="*", default=[], help="compare: name=path latent TSVs.")
    group.add_argument("--phenotypes", help="compare: CSV/TSV of phenotypes keyed by sample id.")
    group.add_argument("--covariates", nargs="*", default=[], help="compare: phenotype columns used as covariates.")
    group.add_argument("--folds", type=int, default=5, help="compare: cross-validation folds.")


def _add_association(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("genetic association (associate)")
    group.add_argument("--genotypes", help="associate: PLINK 1 prefix of a .bed/.bim/.fam trio (IID = sample id).")
    group.add_argument("--covariates_file", help="associate: CSV/TSV of covariates keyed by sample id; "
                                                 "--covariates picks columns (default: all).")
    group.add_argument("--replication_genotypes", help="associate: PLINK 1 prefix of a replication cohort.")
    group.add_argument("--replication_samples", help="associate: CSV of sample ids held out of discovery "
                                                     "to replicate the hits in.")
    group.add_argument("--maf", type=float, default=0.01, help="associate: minimum minor-allele frequency.")
    group.add_argument("--geno", type=float, default=0.1, help="associate: maximum missing-call rate per SNP.")
    group.add_argument("--rint", action="store_true", help="associate: rank-inverse-normal transform latents.")
    group.add_argument("--impute", action="store_true",
                       help="associate: mean-impute missing calls (default: drop the sample for that SNP, as PLINK).")
    group.add_argument("--snp_chunk", type=int, default=10_000, help="associate: SNPs read and tested at once.")
    group.add_argument("--clump_kb", type=float, default=250.0, help="associate: half-width of a locus (kb).")
    group.add_argument("--significance", type=float, default=None,
                       help="associate: P threshold of a hit (default 5e-8 / number of latent dimensions).")
    group.add_argument("--association_counts", nargs="*", default=[],
                       help="compare: associate_counts.tsv of associate runs, to add their hit and locus counts.")


def _add_interpretation(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("interpretation of latent dimensions (interpret)")
    group.add_argument("--interpret_samples", type=int, default=500,
                       help="interpret: subjects whose latents are perturbed (the first N of the table or cohort).")
    group.add_argument("--interpret_dimensions", nargs="*", type=int, default=[],
                       help="interpret: 0-based latent dimensions to map (default: all).")
    group.add_argument("--perturb_sd", type=float, default=1.0,
                       help="interpret: shift of the perturbed dimension, in its standard deviations.")
    group.add_argument("--smooth_sigma", type=float, default=3.0,
                       help="interpret: Gaussian sigma of the |t| maps, in voxels (0: none).")
    group.add_argument("--atlas", help="interpret: NIfTI label image ranking regions (resampled, nearest "
                                       "neighbour, onto the map grid when it lies elsewhere).")
    group.add_argument("--atlas_labels", help="interpret: TSV of label, name[, hemisphere] for --atlas.")
    group.add_argument("--merge_hemispheres", action="store_true",
                       help="interpret: join left and right regions of one structure.")
    group.add_argument("--interpret_mask", help="interpret: NIfTI brain mask (default: the atlas's labelled "
                                                "voxels, else the nonzero voxels of the mean input image).")
    group.add_argument("--lightbox_slices", type=int, default=8, help="interpret: axial slices per lightbox PNG.")
    group.add_argument("--interpret_top_regions", type=int, default=10,
                       help="interpret: regions per dimension in the combined top-regions table.")
    group.add_argument("--interpret_memory_mb", type=float, default=2048.0,
                       help="interpret: memory for running sums; more lets more dimensions share a decoding pass.")


def _add_demo(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("demo cohort and end-to-end demo (demo)")
    group.add_argument("--quick", action="store_true",
                       help="demo: 80 subjects at 5 mm and 3 epochs per model (a few minutes on a CPU).")
    group.add_argument("--full_resolution", action="store_true",
                       help="demo: 1 mm volumes (182x218x182) and UDIP-sized models, for a machine with a GPU.")
    group.add_argument("--demo_subjects", type=int, default=None,
                       help="demo: subjects to generate (default: 300, or 80 with --quick).")
    group.add_argument("--demo_epochs", type=int, default=None, help="demo: epochs per model (default: the preset's).")
    group.add_argument("--demo_data", default=None,
                       help="demo: reuse a cohort folder written by an earlier demo (<demo run>/data).")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ml4ge", description="ml4ge recipes: tensorize, train, infer and compare learned representations."
    )
    for add in (_add_run, _add_data, _add_model, _add_training, _add_inference, _add_association,
                _add_interpretation, _add_demo):
        add(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` and validate it before any work; an invalid combination exits with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        validate(args)
    except (ValueError, KeyError, FileNotFoundError) as error:
        parser.error(str(error))
    return args


def validate(args: argparse.Namespace) -> None:
    """Checks that apply to every mode, then the chosen recipe's own ``validate``.

    Raises:
        ValueError, KeyError, FileNotFoundError: with a message saying what to change.
    """
    recipe = RECIPES.load(args.mode)
    if not 0 <= args.valid_ratio < 1 or not 0 <= args.test_ratio < 1 or args.valid_ratio + args.test_ratio >= 1:
        raise ValueError(
            f"--valid_ratio {args.valid_ratio} and --test_ratio {args.test_ratio} must be in [0, 1) "
            "and leave some samples for training."
        )
    if args.model_file and not Path(args.model_file).is_file():
        raise FileNotFoundError(f"--model_file {args.model_file!r} does not exist.")
    for flag in ("sample_csv", "train_csv", "valid_csv", "test_csv", "manifest", "phenotype_csv", "phenotypes"):
        value = getattr(args, flag)
        if value and not Path(value).is_file():
            raise FileNotFoundError(f"--{flag} {value!r} does not exist.")
    check = getattr(recipe, "validate", None)
    if check is not None:
        check(args)


def run_folder(args: argparse.Namespace) -> Path:
    """``<output_folder>/<id>/``, created."""
    folder = Path(args.output_folder) / args.id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_arguments(args: argparse.Namespace, folder: Path) -> Path:
    """Write the parsed arguments as JSON in the run folder (``arguments.json``)."""
    path = folder / "arguments.json"
    return write_text(path, json.dumps(vars(args), indent=2, sort_keys=True, default=str))
