"""What a pair model's loss did to its two latent spaces, and whether ml4h's contrastive loss saw full batches.

Rows of the side-by-side table (:mod:`ml4ge.demo.study_table`) for each pair model of a study, on its test split
(subjects it never trained on): cross-modal retrieval (for how many subjects the nearest latent of the other
modality, by cosine, is their own; chance is 1 of n) and the mean cosine of a subject's two latents against that of
two different subjects. The pair loss pulls a subject's two latents together and, when contrastive, pushes other
subjects' apart: these rows show how far it got.

:func:`batch_note` reads each model's recorded train flags: ml4h's ``contrastive_difference`` builds its identity
for ``--batch_size`` and ml4h's loader drops a partial last batch; ml4ge's ``contrastive_ml4h`` builds it at each
batch's own size, so a partial batch is scored on another scale (docs/ml4h_differences.md). The note says whether
every split of the study's runs divides into full batches.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ml4ge.demo.context import MODELS, latent_spaces, space_models
from ml4ge.splits import has_split, read_split

if TYPE_CHECKING:
    from ml4ge.demo.context import DemoRun

ML4H_CONTRASTIVE = "contrastive_ml4h"


def paired_spaces(run: DemoRun) -> dict[str, list[str]]:
    """``{pair model: [its two spaces]}`` of the study (input order)."""
    spaces: dict[str, list[str]] = {}
    for space, model in space_models(run).items():
        if MODELS[model].paired:
            spaces.setdefault(model, []).append(space)
    return spaces


def unit_latents(table: pd.DataFrame, ids: list[str]) -> np.ndarray:
    """The latents of ``ids`` (rows in that order), each scaled to unit length."""
    values = table.set_index("sample_id").loc[ids].to_numpy(dtype=float)
    return values / np.maximum(np.linalg.norm(values, axis=1, keepdims=True), 1e-12)


def agreement(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    """Retrieval and cosines of row-aligned unit latents of the same subjects in two spaces.

    Returns:
        ``n``; ``first_to_second`` / ``second_to_first``: subjects whose own latent is the nearest (largest
        cosine) in the other space; ``own`` / ``others``: the mean cosine of the same / of different subjects.
    """
    cosine = first @ second.T
    n = len(cosine)
    subjects = np.arange(n)
    others = cosine[~np.eye(n, dtype=bool)]
    return {"n": n, "first_to_second": int((cosine.argmax(axis=1) == subjects).sum()),
            "second_to_first": int((cosine.argmax(axis=0) == subjects).sum()),
            "own": float(np.diag(cosine).mean()), "others": float(others.mean()) if others.size else float("nan")}


def read_latents(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype={"sample_id": str})


def model_agreement(run: DemoRun, model: str, spaces: list[str]) -> dict[str, float] | None:
    """:func:`agreement` of the model's two spaces on its test split (None before its latents exist)."""
    paths = latent_spaces(run)
    if len(spaces) != 2 or not all(paths[s].is_file() for s in spaces) or not has_split(run.folder / model):
        return None
    first, second = (read_latents(paths[s]) for s in spaces)
    present = set(first.sample_id) & set(second.sample_id)
    ids = [i for i in read_split(run.folder / model).test if i in present]
    return agreement(unit_latents(first, ids), unit_latents(second, ids)) if len(ids) > 1 else None


def agreement_rows(run: DemoRun) -> list[dict]:
    """The retrieval and cosine rows of every pair model of the study (no rows for a study without one)."""
    retrieval = {"measure": "cross-modal retrieval, test split: subjects whose own latent of the other modality is "
                            "the nearest (cosine)"}
    cosines = {"measure": "cosine of a subject's two latents, test split: same subject / different subjects"}
    for model, spaces in paired_spaces(run).items():
        found = model_agreement(run, model, spaces)
        if found is None:
            continue
        names = [attribute.upper() for attribute in MODELS[model].inputs]
        retrieval[spaces[0]] = f"{found['first_to_second']} of {found['n']} ({names[0]} -> {names[1]}; chance 1)"
        retrieval[spaces[1]] = f"{found['second_to_first']} of {found['n']} ({names[1]} -> {names[0]}; chance 1)"
        cosines[spaces[0]] = cosines[spaces[1]] = f"{found['own']:.2f} / {found['others']:.2f}"
    return [retrieval, cosines] if len(retrieval) > 1 else []


def split_batches(sizes: dict[str, int], batch: int) -> str:
    """``train 64, valid 8, test 8 subjects in batches of 8: every batch full`` (or which splits end short)."""
    counts = ", ".join(f"{name} {size}" for name, size in sizes.items())
    short = [f"{name}'s last batch holds {size % batch}" for name, size in sizes.items() if size % batch]
    return f"{counts} subjects in batches of {batch}: " + ("; ".join(short) if short else "every batch full")


def batch_note(run: DemoRun) -> str:
    """Whether the study's models trained with ml4h's contrastive loss saw only full batches ('' for none)."""
    lines = []
    for model in run.plan.models:
        arguments = run.folder / model / "arguments_train.json"
        if not arguments.is_file() or not has_split(run.folder / model):
            continue
        flags = json.loads(arguments.read_text())
        if flags.get("pair_loss") != ML4H_CONTRASTIVE:
            continue
        sizes = read_split(run.folder / model).counts()
        lines.append(f"`{model}`: {split_batches(sizes, int(flags['batch_size']))}")
    if not lines:
        return ""
    return ("Batches of ml4h's contrastive loss (ml4h builds its identity for `--batch_size` and drops a partial "
            "last batch; ml4ge scores a partial batch at its own size, a different scale): " + "; ".join(lines)
            + ".")
