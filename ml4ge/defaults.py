"""Defaults that library functions and the command line share, kept at the bottom layer so both can import them."""

DEFAULT_SEED = 12878  # --random_seed's default and the seed of library functions called without one
