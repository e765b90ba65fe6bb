"""The flags of the demo (its cohort and study): ``demo cohort and end-to-end demo (demo)`` in ``--help``."""

from __future__ import annotations

from ml4ge.arguments.flag import AT_LEAST_1, DEMO, Flag

DEMO_FLAGS: dict[str, Flag] = {
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
                                   "combination, T2 missing for 30 %), brain_age (SFCN brain age on a cohort with "
                                   "an ageing SNP, ridge baselines, GWAS of the brain-age gap) or ml4h (T1 and "
                                   "T2 autoencoders and T1/T2 DropFuse with ml4h's blocks, DropFuse once with "
                                   "ml4ge's corrected pair loss and fusion and once with ml4h's exact ones, side "
                                   "by side).",
                  choices=("brain_age", "cvae", "default", "legibility", "ml4h", "vit")),
}
