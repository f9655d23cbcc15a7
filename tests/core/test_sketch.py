"""The sketch canvas model without Qt: strokes, eraser, brush size, undo/redo, clear."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.sketch import (
    BRUSH_RADIUS_MM,
    DEFAULT_BRUSH_MM,
    SKETCH_CLASSES,
    SketchCanvasModel,
    Tool,
    class_by_value,
)


def canvas(shape=(64, 80), spacing=(1.0, 1.0), radius_mm=3.0, **kw) -> SketchCanvasModel:
    model = SketchCanvasModel(shape, spacing, **kw)
    model.set_brush_radius_mm(radius_mm)
    return model


def stroke(model: SketchCanvasModel, *points: tuple[float, float]) -> None:
    model.begin_stroke(*points[0])
    for p in points[1:]:
        model.continue_stroke(*p)
    model.end_stroke()


def test_class_table_matches_the_contract():
    assert [(c.value, c.name) for c in SKETCH_CLASSES] == [
        (1, "mass"),
        (2, "hypodense"),
        (3, "hyperdense"),
    ]
    assert class_by_value(2).rgb == (58, 134, 255)
    assert len({c.rgb for c in SKETCH_CLASSES}) == 3
    assert all(c.rgb != (0, 0, 0) for c in SKETCH_CLASSES)  # black is background
    with pytest.raises(KeyError):
        class_by_value(4)


def test_class_table_agrees_with_the_simulated_lesions():
    # The sketch model's channels follow app.sim.lesions.LESION_CLASSES.
    from app.sim.lesions import LESION_CLASSES, LESION_COLOURS, LESION_DISPLAY_NAMES

    assert tuple(c.name for c in SKETCH_CLASSES) == tuple(LESION_CLASSES)
    for cls in SKETCH_CLASSES:
        assert cls.display_name == LESION_DISPLAY_NAMES[cls.name]
        assert cls.rgb == tuple(LESION_COLOURS[cls.name])


def test_new_canvas_is_empty_with_a_default_brush():
    model = SketchCanvasModel((10, 12))
    assert model.is_empty()
    assert model.labels.shape == (10, 12) and model.labels.dtype == np.uint8
    assert model.brush_radius_mm == DEFAULT_BRUSH_MM
    assert model.tool is Tool.BRUSH and model.current_class == 1
    assert not model.can_undo() and not model.can_redo()


def test_labels_cannot_be_written_from_outside():
    model = canvas()
    with pytest.raises(ValueError):
        model.labels[0, 0] = 1


def test_a_dab_is_a_round_disc_of_the_brush_radius():
    model = canvas(radius_mm=4.0)
    model.set_class(2)
    stroke(model, (40, 30))
    yy, xx = np.nonzero(model.labels)
    assert set(np.unique(model.labels)) == {0, 2}
    assert (xx.min(), xx.max(), yy.min(), yy.max()) == (36, 44, 26, 34)
    assert np.hypot(xx - 40, yy - 30).max() <= 4.0
    assert model.labels[30, 40] == 2 and model.labels[26, 40] == 2 and model.labels[27, 37] == 0


def test_brush_is_round_in_mm_on_non_square_pixels():
    model = canvas(spacing=(0.5, 2.0), radius_mm=4.0)
    stroke(model, (40, 30))
    yy, xx = np.nonzero(model.labels)
    assert xx.max() - xx.min() == 16  # 8 mm across at 0.5 mm per column
    assert yy.max() - yy.min() == 4  # 8 mm at 2 mm per row
    assert model.brush_radius_px() == (8.0, 2.0)


def test_fast_stroke_leaves_no_gaps():
    model = canvas(radius_mm=1.0)
    # Two mouse events 60 pixels apart: the whole segment is painted.
    stroke(model, (5, 20), (65, 20))
    assert model.labels[20, 5:66].all()
    assert not model.labels[20, :4].any() and not model.labels[20, 67:].any()
    assert not model.labels[23, :].any()


def test_diagonal_stroke_is_connected():
    model = canvas(radius_mm=1.0)
    stroke(model, (2, 2), (60, 50))
    for col in range(2, 61):
        row = 2 + (col - 2) * 48 / 58
        assert model.labels[int(round(row)), col] == 1


def test_stroke_partly_outside_the_slice_is_clipped():
    model = canvas(radius_mm=3.0)
    stroke(model, (-20, -20), (2, 2), (200, 2))
    assert model.labels[0, 0] == 1 and model.labels[2, 79] == 1
    stroke(model, (-50, -50))  # entirely outside: nothing, and no undo step for it
    assert model.can_undo()
    model.undo()
    assert model.is_empty()


def test_eraser_paints_background():
    model = canvas(radius_mm=5.0)
    stroke(model, (10, 30), (70, 30))
    model.set_tool(Tool.ERASER)
    stroke(model, (40, 30))
    assert model.labels[30, 40] == 0
    assert model.labels[30, 20] == 1 and model.labels[30, 60] == 1


def test_brush_overwrites_another_class():
    model = canvas()
    stroke(model, (40, 30))
    model.set_class(3)
    stroke(model, (40, 30))
    assert set(np.unique(model.labels)) == {0, 3}
    with pytest.raises(KeyError):
        model.set_class(0)


def test_brush_radius_is_clamped_and_scales_by_notches():
    model = canvas(radius_mm=5.0)
    model.scale_brush(+1)
    assert model.brush_radius_mm == pytest.approx(6.0)
    model.scale_brush(-2)
    assert model.brush_radius_mm == pytest.approx(6.0 / 1.44)
    model.scale_brush(+100)
    assert model.brush_radius_mm == BRUSH_RADIUS_MM[1]
    model.set_brush_radius_mm(0.01)
    assert model.brush_radius_mm == BRUSH_RADIUS_MM[0]
    with pytest.raises(ValueError):
        model.set_brush_radius_mm(float("nan"))


def test_one_undo_step_per_stroke_and_redo():
    model = canvas()
    stroke(model, (10, 10), (20, 10), (30, 10))
    first = model.labels.copy()
    model.set_class(2)
    stroke(model, (10, 40), (30, 40))
    second = model.labels.copy()
    assert model.undo()
    np.testing.assert_array_equal(model.labels, first)
    assert model.undo()
    assert model.is_empty()
    assert not model.undo()
    assert model.redo()
    np.testing.assert_array_equal(model.labels, first)
    assert model.redo()
    np.testing.assert_array_equal(model.labels, second)
    assert not model.redo()


def test_a_new_stroke_clears_redo():
    model = canvas()
    stroke(model, (10, 10))
    stroke(model, (40, 40))
    model.undo()
    assert model.can_redo()
    stroke(model, (60, 20))
    assert not model.can_redo()
    assert model.labels[40, 40] == 0 and model.labels[20, 60] == 1


def test_a_stroke_that_changes_nothing_is_no_undo_step():
    model = canvas()
    stroke(model, (10, 10))
    stroke(model, (10, 10))  # same dab again
    model.undo()
    assert model.is_empty()


def test_history_is_bounded():
    model = canvas(max_history=3)
    for i in range(5):
        stroke(model, (10 + 12 * i, 10))
    undone = 0
    while model.undo():
        undone += 1
    assert undone == 3
    assert model.labels[10, 10] == 1 and model.labels[10, 22] == 1  # the two oldest stay
    assert model.labels[10, 34] == 0


def test_clear_is_undoable():
    model = canvas()
    stroke(model, (10, 10), (50, 50))
    drawn = model.labels.copy()
    model.clear()
    assert model.is_empty()
    model.undo()
    np.testing.assert_array_equal(model.labels, drawn)
    model.redo()
    assert model.is_empty()


def test_clear_of_an_empty_sketch_adds_no_step():
    model = canvas()
    model.clear()
    assert not model.can_undo()


def test_replace_labels_is_undoable_and_checked():
    model = canvas(shape=(4, 5))
    new = np.zeros((4, 5), np.uint8)
    new[1, 2] = 3
    model.replace_labels(new)
    assert model.labels[1, 2] == 3
    model.undo()
    assert model.is_empty()
    with pytest.raises(ValueError, match="5×4 pixels"):
        model.replace_labels(np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match="class"):
        model.replace_labels(np.full((4, 5), 7, np.uint8))


def test_template_of_the_same_shape_keeps_the_sketch():
    model = canvas()
    stroke(model, (40, 30))
    model.set_template_shape((64, 80), (0.5, 0.5))
    assert not model.is_empty()
    assert model.spacing_mm == (0.5, 0.5)
    assert model.can_undo()


def test_template_of_another_shape_clears_sketch_and_history():
    model = canvas()
    events: list[str] = []
    model.changed.connect(events.append)
    stroke(model, (40, 30))
    model.set_template_shape((32, 32), (1.0, 1.0))
    assert model.shape == (32, 32) and model.is_empty()
    assert not model.can_undo() and not model.can_redo()
    assert "template" in events


def test_changed_reports_what_changed():
    model = canvas()
    events: list[str] = []
    model.changed.connect(events.append)
    model.begin_stroke(10, 10)
    assert events == ["labels"]  # repaint while drawing
    model.continue_stroke(20, 10)
    model.end_stroke()
    assert events[-1] == "history"
    events.clear()
    model.set_tool("eraser")
    model.set_class(3)
    model.scale_brush(1)
    assert events == ["tool", "class", "brush"]


def test_empty_template_ignores_strokes():
    model = SketchCanvasModel()
    stroke(model, (1, 1))
    assert model.is_empty() and not model.can_undo()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        SketchCanvasModel((4, 4), (0.0, 1.0))
    with pytest.raises(ValueError):
        SketchCanvasModel((-1, 4))
    with pytest.raises(ValueError):
        SketchCanvasModel((4, 4), max_history=0)
