import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from ml4ge.tensormap import Interpretation, TensorMap  # noqa: E402

# CI runs the property tests on a fixed sequence of examples, so a run is reproducible and its verdict is the
# code's; a developer's run explores new examples (what it finds is then pinned with @example).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def volume_map():
    """A small 3-D volume map with a brain mask, like the catalogue's MRI maps but tiny."""
    from ml4ge.normalizers import brain_zscore

    return TensorMap("vol", (12, 14, 10, 1), group="mri", normalization=brain_zscore(), mask="nonzero")


@pytest.fixture
def scalar_map():
    return TensorMap("score", (1,), group="phenotypes")


@pytest.fixture
def category_map():
    return TensorMap(
        "group_label", (3,), interpretation=Interpretation.CATEGORICAL, group="phenotypes",
        channel_map={"a": 0, "b": 1, "c": 2},
    )
