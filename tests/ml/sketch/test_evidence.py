"""Rule-based lesion evidence: what it reads, its codes, and evidence-first ranking."""

from __future__ import annotations

import numpy as np
import pytest

from app.ml.runtime.preprocess import InputSpec, window_channels
from app.ml.sketch.evidence import EvidenceParams, LesionEvidence, channels_to_hu, evidence_maps
from app.ml.sketch.models import SketchError
from app.ml.sketch.search import SketchIndex, SliceRef

SIZE = 128
PIXEL_MM = 3.2


def _chest(seed: int = 0) -> np.ndarray:
    """A model-frame chest: soft-tissue body, two lungs, a spine, a liver-like organ, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    c = (SIZE - 1) / 2
    hu = np.full((SIZE, SIZE), -1000.0)
    hu[((x - c) / 50) ** 2 + ((y - c) / 35) ** 2 <= 1] = 40
    for side in (-1, 1):
        hu[((x - c - side * 24) / 17) ** 2 + ((y - c + 4) / 24) ** 2 <= 1] = -850
    hu[((x - c + 18) / 16) ** 2 + ((y - c - 22) / 8) ** 2 <= 1] = 60  # "liver"
    hu[(x - c) ** 2 + (y - c - 28) ** 2 <= 25] = 700  # spine
    return (hu + rng.normal(0, 5, hu.shape)).astype(np.float32)


def _disc(cx: float, cy: float, r: float) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


# Right lung (patient right = image left in display orientation): centre column ~39.
MASS = _disc(40, 60, 4.5)  # ~29 mm nodule
HYPO = _disc(45, 85, 3.5)  # ~22 mm hypodense spot in the "liver"


def _with_mass() -> np.ndarray:
    hu = _chest()
    hu[MASS] = 40 + np.random.default_rng(1).normal(0, 5, MASS.sum())
    return hu


def _with_hypo() -> np.ndarray:
    hu = _chest()
    hu[HYPO] -= 60
    return hu


def test_a_lung_mass_is_read_as_mass_and_only_there():
    params = EvidenceParams()
    clean = evidence_maps(_chest(), params, PIXEL_MM)
    lesion = evidence_maps(_with_mass(), params, PIXEL_MM)
    assert clean[0].sum() == 0
    mass = lesion[0] > 0
    assert (mass & MASS).sum() >= 0.5 * MASS.sum()
    assert (mass & ~_disc(40, 60, 7)).sum() == 0


def test_a_hypodense_spot_is_read_against_its_organ():
    params = EvidenceParams(mirror=False)
    clean = evidence_maps(_chest(), params, PIXEL_MM)
    lesion = evidence_maps(_with_hypo(), params, PIXEL_MM)
    assert clean[1].sum() == 0
    assert (lesion[1] > 0)[HYPO].mean() >= 0.5
    assert lesion[0].sum() == 0  # not a mass: it is not ringed by lung or fat


def test_the_mirror_check_leaves_symmetric_spots_alone():
    hu = _chest()
    spots = _disc(48, 92, 3) | _disc(SIZE - 1 - 48, 92, 3)  # the same on both sides
    hu[spots] = 0.0
    plain = evidence_maps(hu, EvidenceParams(mirror=False), PIXEL_MM)
    mirrored = evidence_maps(hu, EvidenceParams(mirror=True), PIXEL_MM)
    assert (plain[1] > 0)[spots].mean() >= 0.5
    assert (mirrored[1] > 0)[spots].sum() == 0
    # A one-sided spot is still seen with the mirror check.
    one = _chest()
    one[_disc(48, 92, 3)] = 0.0
    assert (evidence_maps(one, EvidenceParams(mirror=True), PIXEL_MM)[1] > 0).sum() > 0


def test_channels_give_the_hu_back_inside_the_windows():
    spec = InputSpec()
    hu = np.linspace(-1300, 1250, SIZE * SIZE, dtype=np.float32).reshape(1, SIZE, SIZE)
    back = channels_to_hu(window_channels(hu, spec), spec)
    np.testing.assert_allclose(back, hu, atol=0.05)


def _coded(ev: LesionEvidence, hu: np.ndarray) -> np.ndarray:
    return ev.abnormality_hu(hu[np.newaxis])[0]


def _sketch_code(ev: LesionEvidence, mask: np.ndarray, label: int) -> np.ndarray:
    cover = np.zeros((3, SIZE, SIZE), np.float32)
    cover[label - 1] = mask
    return ev.sketch_inputs_vectors(cover)[0]


def test_codes_are_unit_and_zero_where_nothing_is_seen():
    ev = LesionEvidence()
    clean, mass = _coded(ev, _chest()), _coded(ev, _with_mass())
    assert ev.abnormality_dim == 3 * 256 + 1
    for code in (clean, mass):
        assert np.linalg.norm(code) == pytest.approx(1.0, abs=1e-5)
    sketch = _sketch_code(ev, MASS, 1)
    assert np.linalg.norm(sketch) == pytest.approx(1.0, abs=1e-5) and sketch[-1] == 0
    assert float(sketch @ clean) == 0.0
    assert float(sketch @ mass) > 0.15
    # The same place sketched as another class finds nothing there.
    assert float(_sketch_code(ev, MASS, 3) @ mass) == 0.0


def _index(ev: LesionEvidence, exact_below: int = 5000) -> tuple[SketchIndex, np.ndarray]:
    """Template-like slice (perfect anatomy, no lesion) vs a lesion slice of poorer anatomy."""
    rng = np.random.default_rng(3)
    anat_q = rng.normal(size=16).astype(np.float32)
    anat_q /= np.linalg.norm(anat_q)
    other = anat_q + 0.9 * rng.normal(size=16).astype(np.float32) / 4
    index = SketchIndex(16, ev.abnormality_dim, exact_below, evidence_floor=ev.evidence_floor)
    refs = [SliceRef(f"p{i}", "", "", f"s{i}", "", "", 0, 1, 0.0) for i in range(2)]
    index.add(
        refs, np.stack([anat_q, other]), np.stack([_coded(ev, _chest()), _coded(ev, _with_mass())])
    )
    return index, anat_q


@pytest.mark.parametrize("weight", [0.05, 0.2, 0.5, 0.8, 1.0])
def test_a_slice_without_evidence_never_ranks_above_one_with_it(weight):
    ev = LesionEvidence()
    index, anat_q = _index(ev)
    sketch = _sketch_code(ev, MASS, 1)
    order, _ = index.ranking(anat_q, sketch, weight)
    assert order[0] == 1
    hits = index.query(anat_q, sketch, weight, k=2, one_per_patient_level=False)
    assert [h.row for h in hits] == [1, 0]


def test_pure_anatomy_still_ranks_by_anatomy():
    ev = LesionEvidence()
    index, anat_q = _index(ev)
    order, _ = index.ranking(anat_q, _sketch_code(ev, MASS, 1), 0.0)
    assert order[0] == 0


def test_evidence_first_holds_through_the_graph():
    ev = LesionEvidence()
    rng = np.random.default_rng(4)
    n = 400
    anat = rng.normal(size=(n, 16)).astype(np.float32)
    anat_q = anat[0] / np.linalg.norm(anat[0])
    clean, mass = _coded(ev, _chest()), _coded(ev, _with_mass())
    abn = np.stack([clean] * n)
    abn[n - 1] = mass  # the only lesion slice, far from the template's anatomy
    index = SketchIndex(16, ev.abnormality_dim, exact_below=10, evidence_floor=ev.evidence_floor)
    refs = [SliceRef(f"p{i}", "", "", f"s{i}", "", "", 0, 1, 0.0) for i in range(n)]
    index.add(refs, anat, abn)
    hits = index.query(anat_q, _sketch_code(ev, MASS, 1), 0.3, k=5, exact=False)
    assert hits[0].row == n - 1


def test_sketch_checks_are_the_models_checks(ct_phantom):
    ev = LesionEvidence()
    vol = ct_phantom(n_slices=4)
    with pytest.raises(SketchError, match="empty"):
        ev.sketch_vector(vol, 1, np.zeros(vol.voxels.shape[1:], np.uint8))
    corner = np.zeros(vol.voxels.shape[1:], np.uint8)
    corner[:3, :3] = 1
    with pytest.raises(SketchError, match="outside the body"):
        ev.sketch_vector(vol, 1, corner)


def test_settings_change_the_identity():
    a, b = LesionEvidence(), LesionEvidence().with_params(k_sd=4.0)
    assert a.abnormality_sha256 != b.abnormality_sha256
    assert a.abnormality_sha256 in a.identity
