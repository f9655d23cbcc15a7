"""Export of matched slice pairs (Qt-free): rendering, privacy, safe writes.

- :mod:`app.export.render`: compose slices side by side with captions (numpy + OpenCV).
- :mod:`app.export.captions`: caption wording, identifier masking, date styles.
- :mod:`app.export.pairs`: panels from the engine's matches or the viewer's viewports,
  and encoding them to file bytes.
- :mod:`app.export.formats`: exporter registry (PNG) and file metadata policy.
- :mod:`app.export.safe_write`: atomic, no-clobber writes (:mod:`app.io.safe_write`) raising export errors.
- :mod:`app.export.names`: identifier-free file names.
- :mod:`app.export.batch`: every matched pair over a slice range, cancellable.
- :mod:`app.export.overlays`: similarity-saliency colouring (imports onnx; load on demand).
"""
