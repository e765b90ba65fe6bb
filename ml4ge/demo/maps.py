"""TensorMaps for the demo cohort's reduced-resolution grids.

The demo cohort is generated directly at a coarse isotropic voxel size on the MNI152 2009 template grid
(197x233x189 mm), so its volumes need no resampling: each map centrally crops/pads the generated grid to a
shape that four (3 mm) or three (5 mm) stride-2 poolings divide. Names are plain module attributes, so any recipe
resolves them as ``ml4ge.demo.maps.t1_3mm`` (dotted names need no ``--tensormap_prefix``).

- ``t1_3mm``/``t2_3mm``: 3 mm grid (66x78x63) -> 64x80x64, the demo's default.
- ``t1_5mm``/``t2_5mm``: 5 mm grid (40x47x38) -> 40x48x40, the ``--quick`` demo.
- ``t1_deep_3mm``/``t1_deep_5mm``/``t1_deep_1mm``: the central 96 mm (120 mm, 96 mm) cube of the same T1
  volumes: ventricles, thalamus, basal ganglia and hippocampi with little cortex, for the demo's deep-brain
  autoencoder.
- ``t1_sfcn_3mm``/``t1_sfcn_5mm``: the 3 mm (5 mm) T1 divided by its mean, cropped/padded to 64x80x64
  (40x48x40): SFCN's input scaling, as the catalogue's ``t1_sfcn`` at 1 mm, for the brain-age study.
Full resolution (1 mm) uses the catalogue's ``t1``/``t2`` (182x218x182) instead.
"""

from ml4ge.normalizers import brain_zscore
from ml4ge.readers import MeanScaled
from ml4ge.tensormap import NONZERO, TensorMap
from ml4ge.tensormaps.brain_mri import GROUP, T1_DATASET, T2_DATASET
from ml4ge.tensormaps.phenotypes import domain


def _grid_map(name: str, dataset: str, shape: tuple[int, int, int], description: str) -> TensorMap:
    voxel_mm = float(name.rsplit("_", 1)[1].removesuffix("mm"))  # each map takes its own grid's voxels only
    return TensorMap(name=name, shape=(*shape, 1), group=GROUP, dataset=dataset, normalization=brain_zscore(),
                     mask=NONZERO, voxel_mm=voxel_mm, description=description)


t1_3mm = _grid_map("t1_3mm", f"{T1_DATASET}_3mm", (64, 80, 64), "demo T1 on the 3 mm MNI grid, cropped/padded")
t2_3mm = _grid_map("t2_3mm", f"{T2_DATASET}_3mm", (64, 80, 64), "demo T2-FLAIR on the 3 mm MNI grid")
t1_5mm = _grid_map("t1_5mm", f"{T1_DATASET}_5mm", (40, 48, 40), "demo T1 on the 5 mm MNI grid, cropped/padded")
t2_5mm = _grid_map("t2_5mm", f"{T2_DATASET}_5mm", (40, 48, 40), "demo T2-FLAIR on the 5 mm MNI grid")
t1_deep_3mm = _grid_map("t1_deep_3mm", f"{T1_DATASET}_3mm", (32, 32, 32), "central 96 mm cube of the 3 mm demo T1")
t1_deep_1mm = _grid_map("t1_deep_1mm", T1_DATASET, (96, 96, 96), "central 96 mm cube of the 1 mm T1")
t1_deep_5mm = _grid_map("t1_deep_5mm", f"{T1_DATASET}_5mm", (24, 24, 24), "central 120 mm cube of the 5 mm demo T1")
brain_volumes = domain("brain_volumes", ["brain_volume", "cortical_gm_volume"],
                       description="demo tabular domain: total and cortical grey-matter volume (mL)")
t1_sfcn_3mm = TensorMap("t1_sfcn_3mm", (64, 80, 64, 1), group=GROUP, reader=MeanScaled(t1_3mm),
                        description="demo T1 on the 3 mm grid / its mean, cropped/padded (SFCN's input)")
t1_sfcn_5mm = TensorMap("t1_sfcn_5mm", (40, 48, 40, 1), group=GROUP, reader=MeanScaled(t1_5mm),
                        description="demo T1 on the 5 mm grid / its mean, cropped/padded (SFCN's input)")
