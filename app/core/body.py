"""The patient's body on a CT slice: the one body mask every layer uses.

The simulator places lesions inside it, the sketch search checks that a
sketch lies on the patient, and the saliency checks compare maps inside it.
"""

from __future__ import annotations

import cv2
import numpy as np

from app.core.imaging import BODY_THRESHOLD_HU

__all__ = ["body_mask"]


def body_mask(slice_hu: np.ndarray) -> np.ndarray:
    """The body on one slice: largest region above -500 HU, its holes (lungs, bowel gas) filled.

    Lung parenchyma lies below -500 HU, so without filling the holes a nodule
    in a lung would count as outside the body.

    Parameters
    ----------
    slice_hu
        ``(rows, cols)`` HU.

    Returns
    -------
    np.ndarray
        ``(rows, cols)`` bool; all False when the slice holds no body.
    """
    above = (np.asarray(slice_hu) > BODY_THRESHOLD_HU).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(above, connectivity=8)
    out = np.zeros(above.shape, dtype=np.uint8)
    if n < 2:
        return out.astype(bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    blob = (labels == largest).astype(np.uint8)
    contours, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, 1, thickness=cv2.FILLED)
    return out.astype(bool)
