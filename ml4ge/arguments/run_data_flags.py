"""The flags of the run (where it is written, its id, seed and workers) and of its data (the HD5 folder, the
TensorMaps, the sample split, what tensorize and build_template read): ``run`` and ``data`` of ``--help``.
"""

from __future__ import annotations

import os

from ml4ge.arguments.flag import AT_LEAST_0, AT_LEAST_1, DATA, RATE, RUN, Flag
from ml4ge.defaults import DEFAULT_SEED

RUN_FLAGS: dict[str, Flag] = {
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
}

DATA_FLAGS: dict[str, Flag] = {
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
}
