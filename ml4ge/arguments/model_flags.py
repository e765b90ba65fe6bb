"""The flags of the architecture, ``model`` in ``--help``: family, blocks and their settings, pair, VAE, cVAE,
predictor and sweep options. Their defaults are the block configs' own (one source for Python and the command
line).
"""

from __future__ import annotations

from ml4ge.arguments.flag import AT_LEAST_0, AT_LEAST_1, AT_LEAST_2, MODEL, POSITIVE, RATE, Bounds, Flag
from ml4ge.models.config import ConvConfig, DenseConfig, PairConfig
from ml4ge.models.predictor_config import PredictorConfig
from ml4ge.models.sfcn_config import SFCNConfig, SoftLabelConfig
from ml4ge.models.vae_config import VAEConfig
from ml4ge.models.vit_config import ViTConfig

CONV, DENSE, PAIR, VIT, VAE = ConvConfig(), DenseConfig(), PairConfig(), ViTConfig(), VAEConfig()
PREDICTOR = PredictorConfig()
SFCN, SOFT = SFCNConfig(), SoftLabelConfig()

MODEL_FLAGS: dict[str, Flag] = {
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
}
