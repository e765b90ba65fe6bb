"""TensorFlow's start-up lines that say nothing to a user, held back from the console.

Importing TensorFlow 2.21 writes, from C++ and before its logging is set up (so ``TF_CPP_MIN_LOG_LEVEL`` does not
hide them), about eight lines: absl's "All log messages before absl::InitializeLog()", oneDNN's "custom operations
are on", the CPU-feature notice, and on a machine without an NVIDIA driver "Could not find cuda drivers" and
"failed call to cuInit". :func:`install` makes the first ``import tensorflow`` run with the process's stderr (file
descriptor 2) sent to a temporary file, together with TensorFlow's first look at its devices (the cuInit line);
then every line of it that is not one of those is written to stderr. The CUDA lines are held back only where there
is no NVIDIA driver (``/proc/driver/nvidia``): on a GPU machine they say why the GPU is not used.

The command line installs it (:func:`ml4ge.cli.main`); a Python session that imports ml4ge is left as it is.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from pathlib import Path

NOISE = (
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"port\.cc:\d+\] oneDNN custom operations are on",
    r"cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized",
    r"^To enable the following instructions:.*rebuild TensorFlow with the appropriate compiler flags",
)
CPU_ONLY_NOISE = (
    r"cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine",
    r"cuda_platform\.cc:\d+\] failed call to cuInit",
    r"cuda_executor\.cc:\d+\] .*(no NVIDIA GPU device|CUDA_ERROR_NO_DEVICE)",
)


def noise_patterns(nvidia_driver: bool | None = None) -> re.Pattern:
    """One pattern matching the lines to hold back (the CUDA ones too unless there is an NVIDIA driver)."""
    if nvidia_driver is None:
        nvidia_driver = Path("/proc/driver/nvidia").exists()
    return re.compile("|".join(NOISE if nvidia_driver else NOISE + CPU_ONLY_NOISE))


def kept_lines(text: str, noise: re.Pattern) -> str:
    """``text`` without its noise lines."""
    return "".join(line for line in text.splitlines(keepends=True) if not noise.search(line))


class _QuietLoader(importlib.abc.Loader):
    """The tensorflow package's own loader, run with file descriptor 2 in a temporary file."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as held:
            os.dup2(held.fileno(), 2)
            try:
                self.loader.exec_module(module)
                module.config.list_physical_devices()  # the cuInit line comes here, not at import
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                held.seek(0)
                text = kept_lines(held.read().decode(errors="replace"), noise_patterns())
                if text:
                    sys.stderr.write(text)
                    sys.stderr.flush()

    def __getattr__(self, name):  # resource readers and the like: the real loader's
        return getattr(self.loader, name)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once, through the other finders, and wraps its loader."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Hold back the start-up lines of the first ``import tensorflow`` (a no-op once it is imported)."""
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlowImport())
