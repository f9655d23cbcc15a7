"""The in-memory CT volume: voxels, geometry and metadata.

Every reader produces a :class:`Volume`; everything downstream (viewer state,
embedding, export) consumes one. Voxels are HU stored as ``int16`` in
``(slice, row, column)`` order, already turned into the display convention by
:func:`app.core.orientation.to_display_orientation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["Geometry", "SeriesInfo", "Volume"]


@dataclass(frozen=True)
class Geometry:
    """Mapping from voxel indices to patient coordinates (LPS, mm).

    Parameters
    ----------
    origin
        LPS position (mm) of the centre of voxel ``[0, 0, 0]``.
    spacing
        Voxel size (mm) along ``(column, row, slice)``, i.e. ``(x, y, z)`` index axes.
    direction
        3x3 matrix whose columns are the unit LPS vectors of the column, row and
        slice index axes.
    """

    origin: np.ndarray
    spacing: np.ndarray
    direction: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", np.asarray(self.origin, dtype=np.float64).reshape(3))
        object.__setattr__(self, "spacing", np.asarray(self.spacing, dtype=np.float64).reshape(3))
        object.__setattr__(
            self, "direction", np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        )

    @property
    def normal(self) -> np.ndarray:
        """Unit LPS vector along which slice indices increase."""
        return self.direction[:, 2]

    def index_to_lps(self, ijk: np.ndarray) -> np.ndarray:
        """Convert ``(..., 3)`` continuous indices ``(col, row, slice)`` to LPS mm."""
        ijk = np.asarray(ijk, dtype=np.float64)
        lps: np.ndarray = self.origin + (ijk * self.spacing) @ self.direction.T
        return lps

    def lps_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Convert ``(..., 3)`` LPS mm points to continuous indices ``(col, row, slice)``."""
        xyz = np.asarray(xyz, dtype=np.float64)
        # Solve rather than transpose: a gantry-tilted series keeps a sheared,
        # non-orthonormal direction matrix.
        m = self.direction * self.spacing
        return np.linalg.solve(m, (xyz - self.origin).reshape(-1, 3).T).T.reshape(xyz.shape)


@dataclass(frozen=True)
class SeriesInfo:
    """Descriptive metadata of one series. Holds identifiers: never log it whole."""

    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    study_uid: str = ""
    study_date: str = ""  # YYYYMMDD, "" when unknown
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    series_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    modality: str = "CT"
    frame_of_reference_uid: str = ""
    body_part: str = ""
    manufacturer: str = ""
    slice_thickness: float | None = None
    convolution_kernel: str = ""

    def display_date(self) -> str:
        """``YYYY-MM-DD`` or ``"undated"``."""
        d = self.study_date
        if len(d) == 8 and d.isdigit():
            return f"{d[:4]}-{d[4:6]}-{d[6:]}"
        return "undated"


@dataclass
class Volume:
    """A CT series in memory.

    Parameters
    ----------
    voxels
        HU values, ``int16``, shape ``(n_slices, n_rows, n_cols)``.
    geometry
        Voxel-to-LPS mapping of ``voxels`` as stored.
    info
        Series metadata.
    slice_positions
        ``(n_slices, 3)`` LPS position (mm) of each slice's first voxel. For DICOM
        this is each slice's ImagePositionPatient, which may be unevenly spaced;
        ``geometry`` then carries the mean spacing. Omitted (``None``), they are
        derived from ``geometry``; after construction it is always an array.
    source
        Where the volume came from (folder or file); used for the series identity.
    warnings
        Human-readable issues found while loading (missing slices, tilt, ...).
    """

    voxels: np.ndarray
    geometry: Geometry
    info: SeriesInfo = field(default_factory=SeriesInfo)
    # None only as the constructor's "derive from geometry"; __post_init__ always
    # stores an array, so readers never see None.
    slice_positions: np.ndarray = None  # type: ignore[assignment]
    source: str = ""
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.voxels.ndim != 3:
            raise ValueError(f"a volume needs 3 dimensions, got shape {self.voxels.shape}")
        if self.slice_positions is None:
            n = self.voxels.shape[0]
            idx = np.zeros((n, 3))
            idx[:, 2] = np.arange(n)
            self.slice_positions = self.geometry.index_to_lps(idx)
        self.slice_positions = np.asarray(self.slice_positions, dtype=np.float64).reshape(-1, 3)
        if len(self.slice_positions) != self.voxels.shape[0]:
            raise ValueError("slice_positions must have one row per slice")

    @property
    def n_slices(self) -> int:
        return int(self.voxels.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        n, rows, cols = self.voxels.shape  # three axes, checked at construction
        return int(n), int(rows), int(cols)

    @property
    def slice_z(self) -> np.ndarray:
        """Signed position (mm) of each slice along the slice normal."""
        z: np.ndarray = self.slice_positions @ self.geometry.normal
        return z

    def slice(self, k: int) -> np.ndarray:
        """The ``k``-th slice (rows x cols) as a view; HU int16."""
        view: np.ndarray = self.voxels[k]
        return view

    def with_voxels(
        self, voxels: np.ndarray, geometry: Geometry, slice_positions: np.ndarray | None = None
    ) -> Volume:
        """A copy sharing metadata, with new voxels and geometry."""
        return replace(
            self,
            voxels=voxels,
            geometry=geometry,
            # None asks __post_init__ to derive the positions from ``geometry``.
            slice_positions=slice_positions,  # type: ignore[arg-type]
            warnings=list(self.warnings),
        )
