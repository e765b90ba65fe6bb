"""The built-in TensorMap catalogue: brain MRI maps and phenotype maps.

Importing a module of this package builds descriptions only; it reads no files. `ml4ge.lookup` finds maps here by
name; the TensorMap class itself is `ml4ge.tensormap`.
"""
