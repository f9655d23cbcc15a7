"""The sketch default weight: chosen on the validation role only (train-sketch, eval-sketch)."""

from __future__ import annotations

import argparse
import json

import pytest

from app.commands import eval_sketch, train_sketch
from app.commands.train_sketch import validation_choice


def _results(role: str) -> dict:
    weights = {"default": 0.5, "anatomy-only": 0.0, "sketch-only": 1.0}
    weights.update({f"w={w / 10:.1f}": w / 10 for w in range(1, 10)})
    inserted = {
        name: {"hit1": 0.0, "hit10": 0.5, "mAP": 0.7 if w == 0.3 else 0.2, "n": 10}
        for name, w in weights.items()
    }
    return {
        "role": role,
        "models": "priorsync-embed-1.0 sha256:feed; priorsync-sketch",
        "weights": weights,
        "summary": {"inserted": {"all": inserted}},
    }


def test_the_weight_comes_from_a_validation_sweep(tmp_path):
    path = tmp_path / "val.json"
    path.write_text(json.dumps(_results("validation")))
    choice = validation_choice(path, "priorsync-embed-1.0 sha256:feed")
    assert choice["weight"] == 0.3 and choice["role"] == "validation"


@pytest.mark.parametrize("role", ["test", "training"])
def test_results_of_another_role_are_refused(tmp_path, role):
    path = tmp_path / "other.json"
    path.write_text(json.dumps(_results(role)))
    with pytest.raises(ValueError, match="validation role only"):
        validation_choice(path, "priorsync-embed-1.0 sha256:feed")


def test_a_sweep_of_another_anatomy_model_or_no_results_is_refused(tmp_path):
    path = tmp_path / "val.json"
    path.write_text(json.dumps(_results("validation")))
    with pytest.raises(ValueError, match="another anatomy model"):
        validation_choice(path, "priorsync-embed-1.0 sha256:beef")
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not eval-sketch results"):
        validation_choice(path, "x")
    with pytest.raises(ValueError, match="missing.json"):
        validation_choice(tmp_path / "missing.json", "x")


def test_eval_sketch_compares_both_representations_in_one_run():
    parser = argparse.ArgumentParser()
    eval_sketch.add_arguments(parser)
    args = parser.parse_args(
        ["--role", "validation", "--compare", "learned", "--compare", "evidence"]
    )
    assert args.compare == ["learned", "evidence"]
    assert parser.parse_args([]).compare is None


def test_train_sketch_takes_a_validation_file_and_may_skip_the_training_sweep():
    parser = argparse.ArgumentParser()
    train_sketch.add_arguments(parser)
    args = parser.parse_args(["--validation-json", "val.json", "--validation-lesions", "0"])
    assert str(args.validation_json) == "val.json" and args.validation_lesions == 0
    assert parser.parse_args([]).validation_json is None
