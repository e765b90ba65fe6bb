"""ml4ge: representation learning of biobank imaging data for genetics."""

__version__ = "0.1.0"
