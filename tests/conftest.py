import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from ml4ge.tensormap import Interpretation, TensorMap  # noqa: E402

# The property tests run a fixed sequence of examples, so every run (CI's included, whatever its environment) is
# reproducible and its verdict is the code's. ML4GE_EXPLORE=1 explores new examples instead; what it finds is then
# pinned with @example.
settings.register_profile("fixed", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile("explore" if os.environ.get("ML4GE_EXPLORE") else "fixed")


def pytest_sessionfinish(session, exitstatus):
    """Stop the reader workers of datasets a test left open before pytest's final garbage collection, which could
    otherwise deadlock on a TensorFlow iterator still prefetching from them (ml4ge.workers.stop_pools)."""
    from ml4ge.workers import stop_pools

    stop_pools()


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


@pytest.fixture(scope="module")
def user_maps(tmp_path_factory):
    """A user TensorMap catalogue package on sys.path (:func:`tensorize_helpers.write_maps_package`), for the
    tensorize tests."""
    from tensorize_helpers import write_maps_package

    root = write_maps_package(tmp_path_factory.mktemp("user_maps"))
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root))
        yield root
