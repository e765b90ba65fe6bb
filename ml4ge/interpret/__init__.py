"""Interpretation of latent dimensions by perturbation-based decoder interpretation (PerDI).

For each latent dimension ``d``, decode every subject's latent and the same latent with ``d`` shifted by ``k``
standard deviations, test the difference voxel by voxel across subjects (paired t), and rank atlas regions by
how strongly the |t| map concentrates in them. Modules: :mod:`.perturb` (decoding), :mod:`.voxel_stats`
(streaming paired t), :mod:`.regions` (atlas and enrichment), :mod:`.grid` (affines and resampling onto the map
grid), :mod:`.sources` (where latents come from), :mod:`.outputs` (NIfTI maps and lightbox PNGs), :mod:`.setup`
(flags to a study's inputs) and :mod:`.study` (the loop over dimensions). ``--mode interpret`` runs a study.
"""
