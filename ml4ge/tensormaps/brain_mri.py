"""UK Biobank-style brain MRI in MNI space (1 mm, 182x218x182), as the UKB imaging pipeline and UDIP use it.

Volumes live at ``/ukb_brain_mri/<dataset>/instance_<k>`` (or in ml4h's slice-per-dataset layout, read the same
way). Downsampled maps read their own dataset when tensorize wrote one and otherwise resample the
full-resolution volume on read (one isotropic zoom factor, centred). All volumes are z-scored over the brain
voxels (UDIP's normalization), and the brain mask (nonzero raw voxels) travels with them for the masked loss.
"""

from ml4ge.normalizers import brain_zscore
from ml4ge.readers import MeanScaled, NonzeroOf
from ml4ge.tensormap import NONZERO, TensorMap

GROUP = "ukb_brain_mri"
MNI_SHAPE = (182, 218, 182)
T1_DATASET = "T1_brain_to_MNI"
T2_DATASET = "T2_FLAIR_brain_to_MNI"
AXIAL_SLICES = tuple(range(32, 160, 8))  # 16 slices spanning the cerebrum


def _volume(name: str, dataset: str, shape, fallback=None, description: str = "", voxel_mm=None) -> TensorMap:
    return TensorMap(
        name=name,
        shape=(*shape, 1),
        group=GROUP,
        dataset=dataset,
        normalization=brain_zscore(),
        mask=NONZERO,
        resize=fallback is not None,
        fallback=fallback,
        voxel_mm=voxel_mm,
        description=description,
    )


# t1/t2 take 1 mm volumes only (tensorize refuses others); the downsampled maps resample any grid on read.
t1 = _volume("t1", T1_DATASET, MNI_SHAPE, description="T1 brain in MNI space, 1 mm", voxel_mm=1.0)
t2 = _volume("t2", T2_DATASET, MNI_SHAPE, description="T2-FLAIR brain in MNI space, 1 mm", voxel_mm=1.0)

t1_96 = _volume("t1_96", f"{T1_DATASET}_96", (96, 96, 96), fallback=t1, description="T1 at about 2.3 mm, 96^3")
t2_96 = _volume("t2_96", f"{T2_DATASET}_96", (96, 96, 96), fallback=t2, description="T2-FLAIR at about 2.3 mm, 96^3")
t1_64 = _volume("t1_64", f"{T1_DATASET}_64", (64, 64, 64), fallback=t1, description="T1 at about 3.4 mm, 64^3")
t2_64 = _volume("t2_64", f"{T2_DATASET}_64", (64, 64, 64), fallback=t2, description="T2-FLAIR at about 3.4 mm, 64^3")

t1_brain_mask = TensorMap("t1_brain_mask", (*MNI_SHAPE, 1), group=GROUP, reader=NonzeroOf(t1))
t2_brain_mask = TensorMap("t2_brain_mask", (*MNI_SHAPE, 1), group=GROUP, reader=NonzeroOf(t2))

t1_axial_slices = TensorMap(
    "t1_axial_slices",
    (MNI_SHAPE[0], MNI_SHAPE[1], len(AXIAL_SLICES)),
    group=GROUP,
    dataset=T1_DATASET,
    axial_slices=AXIAL_SLICES,
    normalization=brain_zscore(),
    voxel_mm=1.0,
    description="16 axial T1 slices as channels (2.5-D)",
)
t2_axial_slices = t1_axial_slices.with_changes(name="t2_axial_slices", dataset=T2_DATASET)

# SFCN's input (Peng et al.; REFERENCE_SEEDS.md section C.1): the T1 divided by its mean, then centre-cropped to
# 160x192x160 (182-22, 218-26, 182-22); no mask, no further normalization.
SFCN_SHAPE = (160, 192, 160)
t1_sfcn = TensorMap("t1_sfcn", (*SFCN_SHAPE, 1), group=GROUP, reader=MeanScaled(t1),
                    description="T1 / its mean, centre-cropped to 160x192x160 (SFCN's input)")
