"""The block-based model factory: encoders, merges and decoders looked up by name in registries."""
