"""Haemorrhage-like and infarct-like lesions painted into phantom volumes.

A lesion is an irregular ellipsoid in millimetres with one HU value. It is
weighted by each pixel's parenchyma fraction, so it replaces grey and white
matter and leaves bone, CSF and air as they are. Its mask therefore lies inside
the brain mask of the volume. Acute haemorrhage is
brighter than parenchyma and an infarct is darker:

    haemorrhage  +50..+90 HU   (parenchyma +25..+40 HU)
    infarct       +5..+20 HU
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import numpy as np

from medanomaly.synthetic.phantom import PhantomVolume, inside_fraction, ray_to_boundary

logger = logging.getLogger(__name__)

HAEMORRHAGE = "haemorrhage"
INFARCT = "infarct"
LESION_HU_RANGES = {HAEMORRHAGE: (50.0, 90.0), INFARCT: (5.0, 20.0)}
LESION_KINDS = tuple(LESION_HU_RANGES)

# In-plane semi-axis range (mm).
RADIUS_RANGE_MM = (4.0, 15.0)
# Smallest cross-section (mm^2) that makes a lesion slice. Smaller tips of the
# ellipsoid are not painted, so every painted slice contains at least this much lesion.
MIN_AREA_MM2 = 20.0
# Placement attempts before giving up on a volume with too little parenchyma.
MAX_ATTEMPTS = 50


@dataclass(frozen=True)
class Lesion:
    """One lesion in patient coordinates (mm) and the slices it was painted into.

    Attributes:
        kind: ``"haemorrhage"`` or ``"infarct"``.
        hu: value inside the lesion before noise.
        centre_mm: ``(x, y, z)`` in patient coordinates (LPS).
        semi_axes_mm: in-plane ``(a, b)`` and through-plane ``c``.
        angle_deg: in-plane rotation of the ``a`` axis.
        harmonics: ``(order, amplitude, phase)`` boundary irregularity.
        slices: indices of the slices that contain lesion pixels.
    """

    kind: str
    hu: float
    centre_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]
    angle_deg: float
    harmonics: tuple[tuple[int, float, float], ...]
    slices: tuple[int, ...] = ()

    @property
    def radius_mm(self) -> float:
        """Mean in-plane semi-axis."""
        return (self.semi_axes_mm[0] + self.semi_axes_mm[1]) / 2


def _min_pixels(pixel_spacing_mm: float) -> int:
    return max(1, math.ceil(MIN_AREA_MM2 / pixel_spacing_mm**2))


def lesion_membership(lesion: Lesion, volume: PhantomVolume, index: int) -> np.ndarray | None:
    """Return the lesion's fraction of each pixel of slice ``index`` (H, W), or None.

    The fraction is limited to parenchyma. None means the slice misses the
    lesion or the cross-section is smaller than ``MIN_AREA_MM2``.
    """
    geometry = volume.geometry
    cx, cy, cz = lesion.centre_mm
    a, b, c = lesion.semi_axes_mm
    dz = geometry.slice_positions_mm[index] - cz
    if abs(dz) >= c:
        return None
    shrink = math.sqrt(1.0 - (dz / c) ** 2)

    px = geometry.pixel_spacing_mm
    x0, y0 = geometry.first_pixel_xy_mm
    coords = np.arange(geometry.size, dtype=np.float32) * np.float32(px)
    du = coords[None, :] + np.float32(x0 - cx)
    dv = coords[:, None] + np.float32(y0 - cy)
    angle = math.radians(lesion.angle_deg)
    pu = math.cos(angle) * du + math.sin(angle) * dv
    pv = -math.sin(angle) * du + math.cos(angle) * dv

    theta = np.arctan2(pv, pu)
    irregular = np.ones_like(theta)
    for order, amplitude, phase in lesion.harmonics:
        irregular += amplitude * np.cos(order * theta + phase)
    rho = np.sqrt((pu / (a * shrink)) ** 2 + (pv / (b * shrink)) ** 2) / irregular
    radius = np.hypot(pu, pv)
    depth = ray_to_boundary(radius, rho, min(a, b) * shrink) - radius

    fraction = inside_fraction(depth, px) * volume.parenchyma[index]
    if np.count_nonzero(fraction >= 0.5) < _min_pixels(px):
        return None
    return fraction


def sample_lesion(
    rng: np.random.Generator, volume: PhantomVolume, kind: str | None = None
) -> Lesion:
    """Draw a lesion of ``kind`` (random when None) centred in deep parenchyma.

    The centre is a random voxel of parenchyma at least half the in-plane
    semi-axis (at most 5 mm) below the brain surface. The through-plane
    semi-axis is at least one slice thickness. With 5 mm slices, 180 sampled
    lesions covered 1 (8%), 2-3 (70%) or 4-5 (22%) adjacent slices.

    Raises:
        ValueError: if ``kind`` is unknown.
        RuntimeError: if no placement gives a lesion slice, which happens only
            for volumes with almost no brain tissue.
    """
    if kind is None:
        kind = LESION_KINDS[int(rng.integers(len(LESION_KINDS)))]
    if kind not in LESION_HU_RANGES:
        raise ValueError(f"invalid lesion kind {kind!r}, expected one of {LESION_KINDS}")

    geometry = volume.geometry
    x0, y0 = geometry.first_pixel_xy_mm
    px = geometry.pixel_spacing_mm
    for _ in range(MAX_ATTEMPTS):
        low, high = LESION_HU_RANGES[kind]
        hu = float(rng.uniform(low, high))
        a = float(rng.uniform(*RADIUS_RANGE_MM))
        b = a * float(rng.uniform(0.7, 1.0))
        c = max(a * float(rng.uniform(0.6, 1.0)), 1.05 * geometry.slice_thickness_mm)
        angle = float(rng.uniform(0.0, 180.0))
        # Low orders give lobulated outlines; strong higher orders would look polygonal.
        harmonics = tuple(
            (order, float(rng.uniform(0.0, max_amplitude)), float(rng.uniform(0, 2 * np.pi)))
            for order, max_amplitude in ((2, 0.10), (3, 0.08), (5, 0.03))
        )

        deep = (volume.parenchyma >= 0.99) & (volume.brain_depth_mm >= min(a / 2, 5.0))
        candidates = np.argwhere(deep)
        if len(candidates) == 0:
            continue
        index, row, col = candidates[int(rng.integers(len(candidates)))]
        z_offset = float(rng.uniform(-0.4, 0.4)) * geometry.slice_thickness_mm
        z = geometry.slice_positions_mm[index] + z_offset
        lesion = Lesion(
            kind=kind,
            hu=hu,
            centre_mm=(float(x0 + col * px), float(y0 + row * px), float(z)),
            semi_axes_mm=(a, b, c),
            angle_deg=angle,
            harmonics=harmonics,
        )
        slices = tuple(
            k for k in range(geometry.n_slices) if lesion_membership(lesion, volume, k) is not None
        )
        if slices:
            return dataclasses.replace(lesion, slices=slices)
    raise RuntimeError(
        f"failed to place a {kind} lesion in {MAX_ATTEMPTS} attempts because the volume has "
        "too little parenchyma. Use more or larger slices."
    )


def paint_lesions(volume: PhantomVolume, lesions: list[Lesion]) -> tuple[np.ndarray, np.ndarray]:
    """Paint ``lesions`` into a copy of the volume's noise-free HU.

    Later lesions paint over earlier ones where they overlap.

    Returns:
        ``(hu, mask)``: float32 HU (S, H, W) and a uint8 label mask (S, H, W)
        where 0 is no lesion and ``i + 1`` marks pixels of which lesion ``i``
        covers at least half.
    """
    hu = volume.hu.copy()
    mask = np.zeros(volume.hu.shape, dtype=np.uint8)
    for number, lesion in enumerate(lesions, start=1):
        for index in lesion.slices:
            fraction = lesion_membership(lesion, volume, index)
            if fraction is None:
                continue
            hu[index] += (np.float32(lesion.hu) - hu[index]) * fraction
            mask[index][fraction >= 0.5] = number
    return hu, mask
