"""Demo cohort: synthetic subjects built from the MNI152 template with planted, known effects."""
