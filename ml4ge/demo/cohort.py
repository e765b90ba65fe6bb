"""Write the demo cohort: NIfTI T1/T2 volumes, manifest, phenotypes, covariates, PLINK genotypes, atlas, truth.

:func:`write_demo_cohort` is the entry point (the contract the demo pipeline builds on). It writes:

- ``t1/<sample_id>.nii.gz``, ``t2/<sample_id>.nii.gz``: float32, skull-stripped, on the MNI152 grid at
  ``voxel_mm`` (3 mm: 66x78x63; 1 mm: 197x233x189), MNI sform; sample ids ``sub0001``...
- ``manifest.csv``: ``sample_id,tensor,path`` (paths relative to the folder) for ``--mode tensorize``.
- ``phenotypes.csv``: ``sample_id, age, sex`` (0 female / 1 male), ``brain_volume``, ``cortical_gm_volume`` (mL)
  and one column per planted trait (:data:`ml4ge.demo.effects.PLANTED_EFFECTS`), measured on the subject.
- ``covariates.tsv``: ``sample_id, age, sex, PC1..PC4`` (genotype principal components).
- ``genotypes.bed/.bim/.fam``: PLINK 1 (bed-reader), FID = IID = sample id, about 1% missing calls.
- ``atlas.nii.gz`` + ``atlas_labels.tsv`` (``label, name, hemisphere``) and ``brain_mask.nii.gz``: on the same grid.
- ``template_t1.nii.gz``, ``template_t2.nii.gz``: the MNI152 T1 and a T2-like image of its tissue maps on the
  same grid, for ``--mode tensorize --register_to`` (the subjects carry random misregistration).
- ``truth.json``: the causal SNPs (planted and measured effects), age and sex effects, the regions per trait.
- With ``patients > 0`` only (:mod:`ml4ge.demo.patients`): ``groups.csv`` (``sample_id, group, subtype,
  atrophy_mm``), ``patients.csv`` and ``controls.csv`` (sample ids, for ``--target_csv``/``--background_csv``) and
  a ``patients`` record in ``truth.json``.

Cohort-level draws (age, sex, genotypes, structure factors) come from ``default_rng(seed)``; each subject's
images from ``default_rng([seed, index])``, so the output is the same for a seed whatever the number of workers.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ml4ge.atomic import atomic_path, write_table, write_text
from ml4ge.demo.ageing import AGEING_TRAITS, apparent_age_shift, check_ageing, choose_ageing_snp
from ml4ge.demo.anatomy import MAX_VOXEL_MM, MIN_VOXEL_MM, load_template
from ml4ge.demo.atlas import load_atlas
from ml4ge.demo.effects import AGE_RANGE, PLANTED_EFFECTS, REGION_AMOUNTS, truth_record
from ml4ge.demo.genotypes import CHROMOSOMES, min_snps, principal_components, simulate_genotypes, write_plink
from ml4ge.demo.patients import add_patients, check_fraction, disease_regions, patients_record
from ml4ge.demo.subject import Scene, SubjectSpec, build_scene, render_subject, t2_image

DEFAULT_TENSORS = ("t1_64", "t2_64")
CONTRASTS = ("t1", "t2")
PCS = 4
MIN_SUBJECTS = 20
MNI_SFORM_CODE = 4
_SCENE: Scene | None = None  # set once per worker process by _init_worker


def sample_id(index: int) -> str:
    return f"sub{index + 1:04d}"


def write_nifti(path, volume: np.ndarray, affine: np.ndarray) -> Path:
    """Write a float32 (or int16 label) volume as .nii.gz with an MNI sform, atomically and byte-reproducibly
    (gzip header without a time stamp)."""
    image = nib.Nifti1Image(volume, affine)
    image.header.set_xyzt_units("mm")
    image.set_sform(affine, code=MNI_SFORM_CODE)
    image.set_qform(affine, code=MNI_SFORM_CODE)
    with atomic_path(path) as temporary:
        temporary.write_bytes(gzip.compress(image.to_bytes(), compresslevel=1, mtime=0))
    return Path(path)


def plan_subjects(subjects: int, genotypes, causal_rows: Sequence[int], rng: np.random.Generator,
                  age_shift=None):
    """Age, sex and the boundary growth (mm) of every planted region for each subject.

    ``age_shift``: years each subject's anatomy looks older (the ageing SNP); None: none, and no draw changes.

    Returns:
        ``(specs, factors)``: list of :class:`SubjectSpec`, and the structure factor per trait (for checks).
    """
    ages = rng.uniform(*AGE_RANGE, subjects)
    sexes = rng.integers(0, 2, subjects)
    anatomical = ages if age_shift is None else ages + np.asarray(age_shift, dtype=np.float64)
    age_z = (anatomical - np.mean(AGE_RANGE)) / ((AGE_RANGE[1] - AGE_RANGE[0]) / np.sqrt(12.0))
    amounts: list[dict[str, float]] = [{} for _ in range(subjects)]
    factors = {}
    for effect, row in zip(PLANTED_EFFECTS, causal_rows, strict=True):
        dose = genotypes.complete[:, row].astype(np.float64)
        factor = effect.age_sd * age_z + effect.effect_sd_per_allele * (dose - dose.mean())
        factor += rng.standard_normal(subjects)
        factors[effect.trait] = factor
        for i, value in enumerate(effect.base_growth_mm + effect.growth_mm_per_sd * factor):
            amounts[i].update(REGION_AMOUNTS[effect.kind](effect, float(value)))
    apparent = [None] * subjects if age_shift is None else [round(float(a), 2) for a in anatomical]
    specs = [SubjectSpec(index=i, sample_id=sample_id(i), age=round(float(ages[i]), 2), sex=int(sexes[i]),
                         region_amounts=amounts[i], apparent_age=apparent[i]) for i in range(subjects)]
    return specs, factors


def _init_worker(scene: Scene) -> None:
    global _SCENE
    _SCENE = scene


def _render_and_write(spec: SubjectSpec, seed: int, folder: str) -> dict[str, float]:
    """Render one subject, write its two NIfTI files, return its phenotype row."""
    rendered = render_subject(_SCENE, spec, seed)
    affine = _SCENE.template.affine
    for contrast, volume in zip(CONTRASTS, (rendered.t1, rendered.t2), strict=True):
        write_nifti(Path(folder) / contrast / f"{spec.sample_id}.nii.gz", volume, affine)
    return {"sample_id": spec.sample_id, "age": spec.age, "sex": spec.sex,
            **{k: round(v, 6) for k, v in rendered.traits.items()}}


def render_all(scene: Scene, specs, seed: int, folder: Path, workers: int) -> pd.DataFrame:
    """Render every subject (in ``workers`` processes when more than one) and return the phenotype table."""
    for contrast in CONTRASTS:
        (folder / contrast).mkdir(parents=True, exist_ok=True)
    if workers <= 1:
        _init_worker(scene)
        rows = [_render_and_write(spec, seed, str(folder)) for spec in specs]
    else:
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(scene,)) as pool:
            rows = list(pool.map(_render_and_write, specs, [seed] * len(specs), [str(folder)] * len(specs),
                                 chunksize=max(1, len(specs) // (4 * workers))))
    return pd.DataFrame(rows)


def write_manifest(folder: Path, ids, tensors: Sequence[str]) -> Path:
    """``sample_id,tensor,path`` rows (paths relative to ``folder``) for ``--mode tensorize``."""
    rows = [(sid, tensor, f"{contrast}/{sid}.nii.gz") for sid in ids
            for tensor, contrast in zip(tensors, CONTRASTS, strict=True)]
    return write_table(pd.DataFrame(rows, columns=["sample_id", "tensor", "path"]), folder / "manifest.csv", sep=",")


def _least_squares(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(coefficients, residual)`` of ``y`` on ``design``."""
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    return coefficients, y - design @ coefficients


def measured_effect(trait: np.ndarray, dose: np.ndarray, covariates: np.ndarray) -> dict[str, float]:
    """Least-squares effect of ``dose`` on ``trait`` adjusted for ``covariates``: per allele in trait units and
    in SDs of the covariate-adjusted trait, with its t statistic."""
    base = np.column_stack([np.ones(len(trait)), covariates])
    design = np.column_stack([base[:, :1], dose, covariates])
    beta, residual = _least_squares(design, trait)
    sigma2 = residual @ residual / (len(trait) - design.shape[1])
    standard_error = np.sqrt(sigma2 * np.linalg.inv(design.T @ design)[1, 1])
    _, adjusted = _least_squares(base, trait)
    return {"measured_beta_per_allele": round(float(beta[1]), 6),
            "measured_effect_sd_per_allele": round(float(beta[1] / adjusted.std()), 4),
            "measured_t": round(float(beta[1] / standard_error), 3)}


def build_truth(genotypes, causal_rows, phenotypes: pd.DataFrame, seed: int, voxel_mm: float) -> dict:
    """The ``truth.json`` record: causal SNPs with planted and measured effects, and the cohort's settings."""
    snps = genotypes.snps
    covariates = phenotypes[["age", "sex"]].to_numpy(dtype=np.float64)
    records = []
    for effect, row in zip(PLANTED_EFFECTS, causal_rows, strict=True):
        snp = snps.iloc[row]
        dose = genotypes.complete[:, row].astype(np.float64)
        records.append({"id": snp["id"], "chrom": int(snp["chrom"]), "pos": int(snp["pos"]), "trait": effect.trait,
                        "region": list(effect.regions), "kind": effect.kind,
                        "effect_sd_per_allele": effect.effect_sd_per_allele, "effect_allele": snp["allele_1"],
                        "maf": float(snp["maf"]),
                        **measured_effect(phenotypes[effect.trait].to_numpy(dtype=np.float64), dose, covariates)})
    return {"snps": records, "null_snps": int(len(snps) - len(records)), **truth_record(),
            "effect_units": "per copy of allele 1 (the .bed's counted allele), in SDs of the structure's "
                            "non-genetic variation",
            "seed": seed, "subjects": len(phenotypes), "voxel_mm": voxel_mm}


def ageing_record(genotypes, row: int, years: float, phenotypes: pd.DataFrame) -> dict:
    """The ageing SNP's ``truth.json`` record: where it is, its planted years per allele, and its measured effect
    (t adjusted for age and sex) on each phenotype that carries anatomical age: whether the data hold it."""
    snp, dose = genotypes.snps.iloc[row], genotypes.complete[:, row].astype(np.float64)
    covariates = phenotypes[["age", "sex"]].to_numpy(dtype=np.float64)
    measured = {trait: measured_effect(phenotypes[trait].to_numpy(dtype=np.float64), dose, covariates)
                for trait in AGEING_TRAITS if trait in phenotypes.columns}
    return {"id": snp["id"], "chrom": int(snp["chrom"]), "pos": int(snp["pos"]), "years_per_allele": float(years),
            "effect_allele": snp["allele_1"], "maf": float(snp["maf"]), "measured": measured}


def write_groups(folder: Path, groups: pd.DataFrame) -> dict[str, Path]:
    """``groups.csv`` and the sample lists of patients and controls (one ``sample_id`` column each)."""
    patients = groups[groups.group == "patient"][["sample_id"]]
    controls = groups[groups.group == "control"][["sample_id"]]
    return {"groups": write_table(groups, folder / "groups.csv", sep=","),
            "patients_list": write_table(patients, folder / "patients.csv", sep=","),
            "controls_list": write_table(controls, folder / "controls.csv", sep=",")}


def check_arguments(subjects: int, voxel_mm: float, snps: int, tensors: Sequence[str], workers: int,
                    patients: float = 0.0) -> None:
    """Refuse arguments the generator cannot honour, before any work.

    Raises:
        ValueError: naming the argument, the value received and what is accepted.
    """
    if subjects < MIN_SUBJECTS:
        raise ValueError(f"subjects must be at least {MIN_SUBJECTS} for a usable demo cohort, got {subjects}")
    if not MIN_VOXEL_MM <= float(voxel_mm) <= MAX_VOXEL_MM:
        raise ValueError(f"voxel_mm must be between {MIN_VOXEL_MM:g} and {MAX_VOXEL_MM:g} mm, got {voxel_mm!r}")
    if snps < min_snps():
        raise ValueError(f"snps={snps} is too few for {CHROMOSOMES} chromosomes; use at least {min_snps()}")
    if len(tensors) != len(CONTRASTS):
        raise ValueError(f"tensors must name the T1 and the T2 TensorMap, got {tuple(tensors)!r}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    check_fraction(patients, subjects)


def write_demo_cohort(folder, subjects: int = 300, voxel_mm: float = 3.0, snps: int = 2000, seed: int = 0,
                      tensors: Sequence[str] = DEFAULT_TENSORS, workers: int = 1,
                      patients: float = 0.0, ageing_years: float = 0.0) -> dict[str, Path]:
    """Generate the demo cohort into ``folder`` (see the module docstring and README for the files).

    Args:
        folder: output folder (created).
        subjects: number of subjects (at least 20).
        voxel_mm: isotropic voxel size of the volumes; 1.0 is the full 197x233x189 MNI152 grid.
        snps: number of SNPs (at least 160), on 4 chromosomes.
        (``subjects``, ``voxel_mm`` and ``snps`` are checked by :func:`check_arguments`.)
        seed: everything is determined by it.
        tensors: TensorMap names for the T1 and T2 rows of the manifest.
        workers: processes rendering subjects (the output does not depend on it).
        patients: fraction of subjects carrying one of two planted disease subtypes (0: none, the default: the
            cohort is then exactly the one without this option; see :mod:`ml4ge.demo.patients`).
        ageing_years: years each allele of an "ageing" SNP adds to the age the anatomy shows (0: no such SNP, the
            default: the cohort is exactly the one without this option; see :mod:`ml4ge.demo.ageing`).

    Returns:
        ``{name: path}`` for t1, t2 (folders), manifest, phenotypes, covariates, bed, bim, fam, atlas,
        atlas_labels, truth, brain_mask, template_t1, template_t2 (and groups, patients_list, controls_list
        with patients).

    Raises:
        ValueError: for a too-small cohort or SNP count, a bad voxel size, or not two tensor names.
    """
    check_arguments(subjects, voxel_mm, snps, tensors, workers, patients)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    genotypes, causal_rows = simulate_genotypes(subjects, snps, rng, causal=len(PLANTED_EFFECTS))
    check_ageing(ageing_years)
    ageing_row = choose_ageing_snp(genotypes.snps, causal_rows, seed) if ageing_years else None
    shift = apparent_age_shift(genotypes.complete, ageing_row, ageing_years) if ageing_years else None
    specs, _ = plan_subjects(subjects, genotypes, causal_rows, rng, age_shift=shift)
    specs, groups = add_patients(specs, patients, seed)  # unchanged without patients
    template, atlas = load_template(float(voxel_mm)), load_atlas(float(voxel_mm))
    scene = build_scene(template, atlas, tuple(disease_regions()) if patients else ())
    phenotypes = render_all(scene, specs, seed, folder, workers)
    ids = list(phenotypes["sample_id"])
    covariates = phenotypes[["sample_id", "age", "sex"]].copy()
    for k, column in enumerate(principal_components(genotypes.dosages, PCS).T, start=1):
        covariates[f"PC{k}"] = np.round(column, 6)
    paths = {"t1": folder / "t1", "t2": folder / "t2", "manifest": write_manifest(folder, ids, tensors),
             "phenotypes": write_table(phenotypes, folder / "phenotypes.csv", sep=","),
             "covariates": write_table(covariates, folder / "covariates.tsv"),
             "bed": write_plink(folder / "genotypes.bed", genotypes, ids, phenotypes["sex"])}
    paths["bim"], paths["fam"] = folder / "genotypes.bim", folder / "genotypes.fam"
    paths["atlas"] = write_nifti(folder / "atlas.nii.gz", atlas.labels.astype(np.int16), atlas.affine)
    paths["atlas_labels"] = write_table(atlas.table, folder / "atlas_labels.tsv")
    paths["template_t1"] = write_nifti(folder / "template_t1.nii.gz", template.t1, template.affine)
    paths["template_t2"] = write_nifti(folder / "template_t2.nii.gz", t2_image(template.csf, template.gm, template.wm),
                                       template.affine)
    paths["brain_mask"] = write_nifti(folder / "brain_mask.nii.gz", template.mask.astype(np.float32), template.affine)
    truth = build_truth(genotypes, causal_rows, phenotypes, seed, float(voxel_mm))
    if ageing_years:
        truth["ageing_snp"] = ageing_record(genotypes, ageing_row, ageing_years, phenotypes)
    if patients:
        truth["patients"] = patients_record(groups, phenotypes["age"], phenotypes["sex"], patients)
        paths |= write_groups(folder, groups)
    paths["truth"] = write_text(folder / "truth.json", json.dumps(truth, indent=2) + "\n")
    return paths
