"""``--mode build_template``: a rigid registration template of any contrast, built from a cohort's own volumes
(method: :mod:`ml4ge.template_building`), for tensorize's ``--register_to TENSOR=TEMPLATE``.

Inputs:
    --manifest manifest.csv      tensorize's manifest (``sample_id, tensor, path``).
    --template_tensor t2         the manifest's rows of this tensor (default: the only tensor in the manifest).
    --template_iterations 4      rounds of rigid registration to the running mean (iteration 0 is the plain mean).

Outputs in ``<output_folder>/<id>/``: ``template_<tensor>.nii.gz`` (on the first volume's grid; pass it to
tensorize's ``--register_to``), ``build_template_iterations.tsv`` (per iteration: volumes used, the mean and least
correlation of the volumes with the template they built) and, when volumes were left out,
``build_template_skipped.tsv`` (path, reason).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ml4ge.arguments import flag_settings, run_folder
from ml4ge.atomic import write_table
from ml4ge.recipes.settings import RunSettings
from ml4ge.recipes.tensorize import read_manifest

log = logging.getLogger(__name__)


@flag_settings
class BuildTemplateSettings(RunSettings):
    """The flags of ``--mode build_template``: the cohort's manifest, which tensor, and how many iterations."""

    mode = "build_template"
    manifest: str | None
    template_tensor: str | None
    template_iterations: int


Settings = BuildTemplateSettings


def template_paths(args: BuildTemplateSettings) -> tuple[str, list[str]]:
    """``(tensor, absolute paths)`` of the manifest rows the template is built from.

    Raises:
        ValueError: without --manifest, for a tensor not in it (or none named when it has several), or fewer than
            2 volumes.
    """
    if not args.manifest:
        raise ValueError("--mode build_template needs --manifest (tensorize's CSV of sample_id, tensor, path).")
    manifest = read_manifest(args.manifest)
    tensors = sorted(manifest["tensor"].unique())
    tensor = args.template_tensor or (tensors[0] if len(tensors) == 1 else None)
    if tensor not in tensors:
        raise ValueError(f"--template_tensor {args.template_tensor}: choose one of the manifest's tensors "
                         f"({', '.join(tensors)}).")
    base = Path(args.manifest).resolve().parent
    paths = [str(path if path.is_absolute() else base / path)
             for path in map(Path, manifest.loc[manifest["tensor"] == tensor, "path"])]
    if len(paths) < 2:
        raise ValueError(f"--manifest has {len(paths)} {tensor} volume(s); a template needs at least 2.")
    return tensor, paths


def validate(args: BuildTemplateSettings) -> None:
    """Raises ValueError before any work when the flags cannot work."""
    template_paths(args)
    if args.template_iterations < 1:
        raise ValueError(f"--template_iterations {args.template_iterations}: use 1 or more.")


def write_template(template: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    """The template as a float32 NIfTI in mm, written under a temporary name and renamed."""
    image = nib.Nifti1Image(template.astype(np.float32), affine)
    image.header.set_xyzt_units("mm")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp.nii.gz")
    try:
        nib.save(image, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def run(args: BuildTemplateSettings) -> int:
    """Build the template and write it with its iteration table; 0 (volumes left out are listed and logged)."""
    from ml4ge.template_building import build_template

    tensor, paths = template_paths(args)
    folder = run_folder(args)
    log.info("build_template: %d %s volumes, %d iterations", len(paths), tensor, args.template_iterations)
    result = build_template(paths, args.template_iterations)
    write_table(pd.DataFrame(result.iterations), folder / "build_template_iterations.tsv")
    if result.skipped:
        write_table(pd.DataFrame(list(result.skipped.items()), columns=["path", "reason"]),
                    folder / "build_template_skipped.tsv")
        log.warning("build_template: %d volume(s) left out (build_template_skipped.tsv)", len(result.skipped))
    path = write_template(result.template, result.affine, folder / f"template_{tensor}.nii.gz")
    log.info("build_template: wrote %s; use it with tensorize's --register_to %s=%s", path, tensor, path)
    return 0
