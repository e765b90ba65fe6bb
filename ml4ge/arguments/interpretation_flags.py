"""The flags of interpret (maps of latent dimensions and directions, region tables):
``interpretation of latent dimensions (interpret)`` in ``--help``.
"""

from __future__ import annotations

from ml4ge.arguments.flag import AT_LEAST_0, AT_LEAST_1, AT_LEAST_2, INTERPRETATION, POSITIVE, Flag

INTERPRETATION_FLAGS: dict[str, Flag] = {
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
}
