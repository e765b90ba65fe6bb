"""The Docker images are built on the versions the tests run (#20 item 8): Python and TensorFlow of the images
satisfy setup.py and match this test environment, Keras is left to setup.py's pin, plink2 is installed, and the
image runs as a non-root user. (Building the images needs Docker, which the tests do not assume.)"""

import ast
import re
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile.*"))


def setup_arguments() -> dict:
    """The keyword arguments of setup.py's ``setup(...)`` call that are literals."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    calls = (node for node in ast.walk(tree) if isinstance(node, ast.Call))
    call = next(node for node in calls if getattr(node.func, "id", "") == "setup")
    found = {}
    for keyword in call.keywords:
        try:
            found[keyword.arg] = ast.literal_eval(keyword.value)
        except ValueError:
            continue
    return found


def requirement(name: str) -> Requirement:
    return next(r for r in map(Requirement, setup_arguments()["install_requires"]) if r.name == name)


def major_minor(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def base_python(text: str) -> str:
    match = re.search(r"^FROM python:(\d+\.\d+)(?:\.\d+)?-slim", text, re.MULTILINE)
    assert match, "the image must start from an official python:<version>-slim image"
    return match.group(1)


def tensorflow_version(text: str) -> str:
    match = re.search(r"^ARG TENSORFLOW_VERSION=(\S+)$", text, re.MULTILINE)
    assert match and '"tensorflow' in text and "==${TENSORFLOW_VERSION}" in text, \
        "pin TensorFlow with ARG TENSORFLOW_VERSION and install tensorflow==${TENSORFLOW_VERSION}"
    return match.group(1)


def test_there_are_cpu_and_gpu_images():
    assert [path.name for path in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.gpu"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_the_image_runs_the_python_and_tensorflow_of_the_tests(dockerfile):
    text = dockerfile.read_text()
    python = base_python(text)
    assert SpecifierSet(setup_arguments()["python_requires"]).contains(f"{python}.0")
    assert major_minor(python) == sys.version_info[:2], f"{dockerfile.name}: Python {python}, tests run {sys.version}"
    tensorflow = tensorflow_version(text)
    assert requirement("tensorflow").specifier.contains(tensorflow), f"{dockerfile.name}: setup.py refuses {tensorflow}"
    assert major_minor(tensorflow) == major_minor(version("tensorflow")), (
        f"{dockerfile.name} pins TensorFlow {tensorflow}; the tests run {version('tensorflow')}")
    # Keras: whatever setup.py's pin resolves to, which is what the tests run
    assert "keras==" not in text and "--no-deps" not in text and "pip install --no-cache-dir" in text
    assert requirement("keras").specifier.contains(version("keras"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_the_image_has_plink2_and_runs_as_a_user(dockerfile):
    text = dockerfile.read_text()
    assert re.search(r"apt-get install[^\n]*\bplink2\b", text), f"{dockerfile.name} does not install plink2"
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"{dockerfile.name} runs as root"
    last_run = max(i for i, line in enumerate(text.splitlines()) if line.startswith("RUN "))
    last_user = max(i for i, line in enumerate(text.splitlines()) if line.startswith("USER "))
    assert last_user > last_run and "ENTRYPOINT" in text.split(f"USER {users[-1]}")[-1]


def test_the_gpu_image_installs_tensorflows_cuda_libraries():
    assert '"tensorflow[and-cuda]==${TENSORFLOW_VERSION}"' in (ROOT / "docker" / "Dockerfile.gpu").read_text()
