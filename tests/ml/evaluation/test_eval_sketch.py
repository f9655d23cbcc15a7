"""The sketch evaluation: its metrics, the mask transfer to a template, and a tiny full run."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from engine_helpers import phantom_volume

from app.ml.evaluation.sketch import (
    SourceSet,
    average_precision,
    format_sketch_report,
    hit_at_k,
    run_sketch_eval,
    transfer_mask,
    visible_target_level,
)
from app.ml.runtime.preprocess import InputSpec, body_centroids
from app.ml.sketch.evidence import LesionEvidence


def test_average_precision_known_values():
    assert average_precision([True, False, False]) == 1.0
    assert average_precision([False, True, False, True]) == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert average_precision([False, False, True]) == pytest.approx(1 / 3)
    assert np.isnan(average_precision([False, False]))


def test_hit_at_k():
    assert hit_at_k([False, True], 2) and not hit_at_k([False, True], 1)
    assert not hit_at_k([], 10)


def test_transfer_mask_keeps_place_relative_to_the_body_and_physical_size():
    spec = InputSpec(size=64, pixel_mm=6.0)
    src = phantom_volume(n_slices=5, matrix=64, pixel_mm=6.0)
    # Another "patient": finer pixels, so the same mm is more pixels.
    tgt = phantom_volume(n_slices=5, matrix=128, pixel_mm=3.0, seed=3)
    mask = np.zeros((64, 64), dtype=bool)
    mask[20:26, 36:42] = True  # 36 x 36 mm, right of and above the body centre
    moved = transfer_mask(mask, src, 2, tgt, 2, spec)
    assert moved.shape == (128, 128)
    assert moved.sum() == pytest.approx(mask.sum() * 4, rel=0.25)
    c_src = body_centroids(src, [2])[0]
    c_tgt = body_centroids(tgt, [2])[0]
    rows, cols = np.nonzero(mask)
    offset_mm = (np.array([cols.mean(), rows.mean()]) - c_src) * 6.0
    rows, cols = np.nonzero(moved)
    moved_mm = (np.array([cols.mean(), rows.mean()]) - c_tgt) * 3.0
    assert np.allclose(offset_mm, moved_mm, atol=4.0)


@pytest.fixture(scope="module")
def tiny_report(toy_model, toy_sketch_models):
    from app.sim.followup import SIM_PRESETS

    holdout = phantom_volume(n_slices=40, seed=1)
    template = phantom_volume(n_slices=40, seed=7, level0=20.0, pixel_mm=5.0)
    tumour_vol = phantom_volume(n_slices=30, seed=2, level0=10.0)
    mask = np.zeros(tumour_vol.voxels.shape, dtype=bool)
    mask[12:17, 28:36, 20:28] = True
    params = dataclasses.replace(
        SIM_PRESETS["standard"], matrix_sizes=(64,), lesion_probability=0.0
    )
    sources = SourceSet(
        holdout={"phantom": holdout, "tumour-phantom": tumour_vol},
        templates={"template": template},
        tumours={"tumour-phantom": (tumour_vol, mask)},
        notes=["test sources"],
    )
    return run_sketch_eval(
        toy_model,
        toy_sketch_models,
        sources,
        seed=0,
        patients_per_volume=2,
        sketches_per_lesion=2,
        tumour_levels=2,
        sketches_per_tumour_level=2,
        sim_params=params,
        compare={"evidence": LesionEvidence()},
    )


def test_tiny_run_scores_every_query(tiny_report):
    r = tiny_report
    plain = {"default", "anatomy-only", "sketch-only"}
    assert set(r.weights) == plain | {f"evidence/{w}" for w in plain}
    assert r.weights["anatomy-only"] == 0.0 and r.weights["default"] == 0.5
    inserted = [q for q in r.queries if q.part == "inserted"]
    tumour = [q for q in r.queries if q.part == "tumour"]
    assert len(inserted) + len(r.skipped_queries) >= 1
    assert len(inserted) >= 1 and len(tumour) >= 1
    assert r.archive_patients["all"] == 2 + r.archive_patients["with_inserted_lesion"]
    for q in r.queries:
        assert q.template == "template"
        assert q.n_relevant >= 1
        for w in r.weights:
            assert 0.0 < q.ap[w] <= 1.0
            assert q.first_rank[w] >= 1
            assert q.hit10[w] >= q.hit1[w]
            # hit@1 on the deduplicated list implies the top raw result is relevant.
            if q.hit1[w]:
                assert q.first_rank[w] == 1
    # At most 5 relevant slices (±2 of one patient) in both parts.
    assert all(q.n_relevant <= 5 for q in r.queries)


def test_tiny_run_report_and_json(tiny_report):
    text = format_sketch_report(tiny_report)
    assert "Part 1: inserted lesions" in text and "Part 2: real tumours" in text
    assert "anatomy-only (w=0.00)" in text
    data = json.loads(json.dumps(tiny_report.to_dict()))
    summary = data["summary"]["inserted"]["all"]
    assert {"default", "anatomy-only", "sketch-only", "evidence/default"} <= set(summary)
    assert 0.0 <= summary["default"]["hit1"] <= summary["default"]["hit10"] <= 1.0
    for name, figures in summary.items():
        for metric in ("hit1", "hit10", "mAP"):
            low, high = figures["ci95"][metric]
            assert low <= figures[metric] <= high
        if name != "anatomy-only":
            assert set(figures["vs_anatomy"]) == {"hit1", "hit10", "mAP"}
    # The anatomy-only figures do not depend on the representation.
    assert summary["evidence/anatomy-only"]["mAP"] == summary["anatomy-only"]["mAP"]
    assert data["notes"][0] == "test sources"


def test_tumour_masks_are_read_like_the_image_and_checked(tmp_path, monkeypatch):
    from app.io.dicom_write import write_volume_file
    from app.io.load import load_volume
    from app.ml.evaluation.sketch import _load_tumour

    monkeypatch.setenv("PRIORSYNC_SHARED_DATA", str(tmp_path))
    vol = phantom_volume(n_slices=12, seed=4)
    # A flipped direction: the reader's display orientation must apply to both files.
    flipped = dataclasses.replace(
        vol,
        geometry=dataclasses.replace(vol.geometry, direction=np.diag([-1.0, -1.0, 1.0])),
        slice_positions=None,
    )
    write_volume_file(flipped, tmp_path / "img.nrrd")
    image = load_volume(tmp_path / "img.nrrd")
    label = np.zeros(flipped.voxels.shape, np.int16)
    label[5:8, 20:30, 10:20] = 1  # on the body (soft tissue) in the stored orientation
    write_volume_file(dataclasses.replace(flipped, voxels=label), tmp_path / "x.tumour-mask.nrrd")
    notes: list[str] = []
    mask = _load_tumour("x", image, notes)
    assert mask is not None and "aligned" in notes[0]
    assert mask.sum() == 3 * 10 * 10
    assert np.median(image.voxels[mask]) > -300
    # In the air: refused as not a soft-tissue blob.
    label[:] = 0
    label[5:8, 0:3, 0:3] = 1
    write_volume_file(dataclasses.replace(flipped, voxels=label), tmp_path / "y.tumour-mask.nrrd")
    assert _load_tumour("y", image, notes) is None and "not used" in notes[-1]
    # Another grid: refused.
    other = phantom_volume(n_slices=5, seed=4)
    write_volume_file(other, tmp_path / "z.tumour-mask.nrrd")
    assert _load_tumour("z", image, notes) is None and "another grid" in notes[-1]
    assert _load_tumour("absent", image, notes) is None


def test_visible_target_rule():
    vol = phantom_volume(n_slices=10, seed=5)
    target = np.zeros(vol.voxels.shape, dtype=bool)
    target[3:7, 30:40, 26:36] = True  # soft tissue of the body
    assert visible_target_level(vol, target) is None  # normal tissue: not visible
    darker = dataclasses.replace(vol, voxels=vol.voxels.copy())
    darker.voxels[target] -= 40
    found = visible_target_level(darker, target)
    assert found is not None and found[1] == "hypodense" and found[2] < -15
    brighter = dataclasses.replace(vol, voxels=vol.voxels.copy())
    brighter.voxels[target] += 40
    assert visible_target_level(brighter, target)[1] == "hyperdense"
    assert visible_target_level(vol, np.zeros_like(target)) is None


def _sweep_results(role, maps, extra=None):
    """eval-sketch results of a sweep: ``maps`` is the inserted mAP at w = 0.0 ... 1.0."""
    weights = {"default": 0.5, "anatomy-only": 0.0, "sketch-only": 1.0}
    weights.update({f"w={w / 10:.1f}": w / 10 for w in range(1, 10)})
    names = {0.0: "anatomy-only", 1.0: "sketch-only"}
    inserted = {}
    for i, m in enumerate(maps):
        name = names.get(i / 10, f"w={i / 10:.1f}")
        inserted[name] = {"hit1": 0.1, "hit10": 0.5, "mAP": m, "n": 20}
    inserted["default"] = inserted["w=0.5"]
    results = {
        "role": role,
        "models": "anatomy sha256:abc; sketch",
        "weights": weights,
        "summary": {"inserted": {"all": inserted}},
    }
    results.update(extra or {})
    return results


def test_default_weight_is_the_best_validation_map_ties_to_one_half():
    from app.ml.evaluation.sketch import choose_validation_weight

    maps = [0.1, 0.2, 0.3, 0.4, 0.6, 0.5, 0.6, 0.2, 0.2, 0.1, 0.1]
    choice = choose_validation_weight(_sweep_results("validation", maps))
    assert choice["weight"] == 0.4 and choice["role"] == "validation"
    assert [e["w"] for e in choice["sweep"]] == [i / 10 for i in range(11)]
    tie = [0.1, 0.2, 0.3, 0.6, 0.2, 0.5, 0.2, 0.6, 0.2, 0.1, 0.1]
    assert choose_validation_weight(_sweep_results("validation", tie))["weight"] == 0.3
    # "default" (w = 0.5) is not counted twice, and a compare representation has its own sweep.
    assert choose_validation_weight(_sweep_results("validation", [0.5] * 11))["weight"] == 0.5


@pytest.mark.parametrize("role", ["test", "training", None])
def test_default_weight_is_never_chosen_off_the_validation_role(role):
    from app.ml.evaluation.sketch import choose_validation_weight

    with pytest.raises(ValueError, match="validation role only"):
        choose_validation_weight(_sweep_results(role, [0.5] * 11))


def test_default_weight_needs_a_full_sweep():
    from app.ml.evaluation.sketch import choose_validation_weight

    results = _sweep_results("validation", [0.5] * 11)
    for name in [n for n in results["weights"] if n.startswith("w=")]:
        del results["summary"]["inserted"]["all"][name]
    with pytest.raises(ValueError, match="--sweep"):
        choose_validation_weight(results)
    with pytest.raises(ValueError, match="--sweep"):
        choose_validation_weight(_sweep_results("validation", [0.5] * 11), "evidence")


def test_the_report_carries_its_sources_role(tiny_report):
    assert tiny_report.role is None and tiny_report.to_dict()["role"] is None
