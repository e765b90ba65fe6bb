import json
import subprocess
import sys
from pathlib import Path

import pytest

from ml4ge.arguments import build_parser
from ml4ge.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_help_is_grouped_and_lists_modes():
    text = build_parser().format_help()
    for group in ("run:", "data:", "model:", "training:", "inference and comparison:"):
        assert group in text
    assert "tensorize" in text and "infer_encoders" in text


def test_unknown_mode_is_refused_with_closest_match(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--mode", "tensorise"])
    assert exit_info.value.code == 2
    assert "Did you mean 'tensorize'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model_file", "missing.keras"], "--model_file 'missing.keras' does not exist"),
        (["--valid_ratio", "0.6", "--test_ratio", "0.5"], "leave some samples for training"),
        (["--sample_csv", "nowhere.csv"], "--sample_csv 'nowhere.csv' does not exist"),
    ],
)
def test_bad_flags_are_refused_before_any_work(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--mode", "tensorize", "--output_folder", str(tmp_path), *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "a refused run must not create its run folder"


def test_recipes_py_runs_from_a_checkout():
    result = subprocess.run([sys.executable, "recipes.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "--input_tensors" in result.stdout


def test_arguments_are_saved_as_json(tmp_path):
    from ml4ge.arguments import parse_args, run_folder, save_arguments

    latents, phenotypes = tmp_path / "hidden.tsv", tmp_path / "phenotypes.csv"
    latents.write_text("sample_id\tlatent_0\n1\t0.5\n")
    phenotypes.write_text("sample_id,age\n1,50\n")
    args = parse_args([
        "--mode", "compare", "--output_folder", str(tmp_path), "--id", "run1", "--folds", "3",
        "--latent_tables", f"t1={latents}", "--phenotypes", str(phenotypes),
    ])
    path = save_arguments(args, run_folder(args))
    saved = json.loads(path.read_text())
    assert saved["mode"] == "compare" and saved["folds"] == 3 and path.parent == tmp_path / "run1"
