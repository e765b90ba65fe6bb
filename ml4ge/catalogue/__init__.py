"""Ready-made TensorMaps. Importing a catalogue module builds descriptions only; it reads no files."""
