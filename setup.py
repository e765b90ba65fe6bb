from setuptools import find_packages, setup

setup(
    name="ml4ge",
    version="0.1.0",
    description="Representation learning of biobank brain MRI and its genetic signal, on Keras 3 / TensorFlow",
    packages=find_packages(include=["ml4ge", "ml4ge.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.18",
        "keras>=3.15,<3.16",  # strategy.keras_distribution_fixes patches private Keras code: tested on 3.15
        "h5py>=3.10",
        "numpy>=1.26",
        "pandas>=2.0",
        "scipy>=1.11",
        "nibabel>=5.0",
        "scikit-learn>=1.4",
        "matplotlib>=3.8",
        "tqdm>=4.60",
        "psutil>=5.9",
        "tensorboard>=2.18",
        "nilearn>=0.10",
        "bed-reader>=1.0",
        "wrapt>=1.14",
        "numba>=0.60",  # ml4ge.genetics.compiled_text: the summary-statistics tables' text, compiled
        "isal>=1.6",  # the summary-statistics tables' gzip (ISA-L: 3x zlib's speed)
    ],
    extras_require={
        "test": [
            "pytest>=8", "pytest-timeout>=2.3", "ruff>=0.5", "jax>=0.4",
            "statsmodels>=0.14", "hypothesis>=6.100", "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.0",
            "nbconvert>=7",  # the notebook test runs README's jupyter nbconvert command
            "pydot>=3",  # the --inspect_model test draws the architecture picture
        ],
        # what README's notebook commands need: a Jupyter front end, nbconvert and a Python kernel
        "notebook": ["notebook>=7", "nbconvert>=7", "ipykernel>=6.0"],
        "inspect": ["pydot>=3"],  # --inspect_model's architecture picture (with Graphviz's dot program)
    },
    entry_points={"console_scripts": ["ml4ge=ml4ge.cli:console_main"]},
)
