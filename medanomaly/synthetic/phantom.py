"""Head-CT-like phantom slices in Hounsfield units (HU).

A subject is a set of nested ellipsoids in millimetres. From the outside in
they are the scalp, the skull (dense outer and inner tables around a lighter
diploe), a thin rim of subarachnoid CSF, cortical grey matter with gyri and
sulci, and white matter. Deep grey nuclei and the ventricular system sit
inside. An axial slice is the cross-section of those
ellipsoids at one height ``z``, so the head outline, the skull thickness seen
in plane and the ventricles change smoothly along a series.

Coordinates follow DICOM patient coordinates (LPS): ``x`` grows towards the
patient's left along image columns, ``y`` towards posterior along image rows,
``z`` towards superior with the slice index. Edges are anti-aliased by a
one-pixel linear ramp, which approximates the partial-volume effect.

Typical values (head CT, 120 kVp): air -1000, fat -100..-50, CSF 0..15,
white matter 20..30, grey matter 30..45, cortical bone 700..1500+.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

AIR_HU = -1000.0
# Field of view of the reconstructed slice, so the pixel spacing is FOV / size.
FIELD_OF_VIEW_MM = 240.0
# Axial slab covered by a series, in mm relative to the head centre: from just
# below the lateral ventricles to the upper convexity.
SLAB_MM = (-16.0, 64.0)
# Nominal clinical slice thickness. Series with many slices use thinner ones to fit the slab.
MAX_SLICE_THICKNESS_MM = 5.0

TISSUE_CSF = "csf"
TISSUE_GREY = "grey"


@dataclass(frozen=True)
class SeriesGeometry:
    """Sampling grid of one axial series.

    Attributes:
        size: rows and columns of each slice.
        pixel_spacing_mm: in-plane spacing, equal along rows and columns.
        slice_positions_mm: ``z`` of each slice centre, increasing.
        slice_thickness_mm: spacing between slice centres (contiguous slices).
    """

    size: int
    pixel_spacing_mm: float
    slice_positions_mm: tuple[float, ...]
    slice_thickness_mm: float

    @property
    def n_slices(self) -> int:
        return len(self.slice_positions_mm)

    @property
    def first_pixel_xy_mm(self) -> tuple[float, float]:
        """Patient ``x``, ``y`` of the centre of pixel (row 0, column 0)."""
        offset = -(self.size - 1) / 2 * self.pixel_spacing_mm
        return offset, offset


def make_geometry(size: int = 256, n_slices: int = 16) -> SeriesGeometry:
    """Build the grid of a series of ``n_slices`` contiguous axial slices.

    The slices are centred on the slab ``SLAB_MM`` and are at most
    ``MAX_SLICE_THICKNESS_MM`` thick, so a short series covers the middle of the
    slab and a long one covers all of it with thinner slices.

    Raises:
        ValueError: if ``size`` < 16 or ``n_slices`` < 1.
    """
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    if n_slices < 1:
        raise ValueError(f"n_slices must be at least 1, got {n_slices}")

    low, high = SLAB_MM
    thickness = min(MAX_SLICE_THICKNESS_MM, (high - low) / n_slices)
    middle = (low + high) / 2
    first = middle - (n_slices - 1) / 2 * thickness
    positions = tuple(float(first + i * thickness) for i in range(n_slices))
    return SeriesGeometry(
        size=size,
        pixel_spacing_mm=FIELD_OF_VIEW_MM / size,
        slice_positions_mm=positions,
        slice_thickness_mm=float(thickness),
    )


@dataclass(frozen=True)
class Ellipsoid:
    """An internal structure in the head frame (mm, before the head's rotation).

    ``angle_deg`` rotates the structure in the axial plane, and ``tissue`` is
    ``"csf"`` (ventricles) or ``"grey"`` (deep grey nuclei).
    """

    centre: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    angle_deg: float
    tissue: str


@dataclass(frozen=True)
class HeadParams:
    """Anatomy and acquisition of one synthetic subject. Lengths in mm, values in HU.

    Harmonics are ``(order, amplitude, phase)`` triples of a Fourier series in
    the polar angle of the head frame. The gyral and sulcal patterns also drift
    with ``z`` (``*_drift`` in radians per mm) so neighbouring slices differ.
    """

    centre_mm: tuple[float, float, float]
    tilt: tuple[float, float]
    rotation_deg: float
    semi_axes_mm: tuple[float, float, float]
    outline_harmonics: tuple[tuple[int, float, float], ...]
    scalp_mm: float
    skull_mm: float
    skull_harmonics: tuple[tuple[int, float, float], ...]
    csf_rim_mm: float
    grey_mm: float
    gyral_amplitude_mm: float
    gyral_harmonics: tuple[tuple[int, float, float], ...]
    gyral_drift: float
    sulcus_order: int
    sulcus_phase: float
    sulcus_drift: float
    sulcus_depth_mm: float
    structures: tuple[Ellipsoid, ...]
    scalp_hu: float
    bone_table_hu: float
    bone_diploe_hu: float
    csf_hu: float
    grey_hu: float
    white_hu: float
    noise_sd_hu: float


def _harmonics(rng: np.random.Generator, orders, max_amplitude: float) -> tuple:
    return tuple(
        (int(k), float(rng.uniform(0.0, max_amplitude)), float(rng.uniform(0, 2 * np.pi)))
        for k in orders
    )


def _sample_structures(rng: np.random.Generator, scale: float) -> tuple[Ellipsoid, ...]:
    """Sample ventricles and deep grey nuclei, mirrored about the midline."""
    # The ventricle scale spans 0.7 to 1.4, from young to atrophic brains.
    v = float(rng.uniform(0.7, 1.4))
    spread = float(rng.uniform(0.9, 1.1))
    z_shift = float(rng.uniform(-4.0, 4.0))
    asymmetry = float(rng.uniform(0.9, 1.1))
    structures = []
    for side, side_size in ((-1.0, 1.0), (1.0, asymmetry)):
        vs = v * side_size
        structures += [
            # Body of the lateral ventricle, converging towards the midline anteriorly.
            Ellipsoid((side * 8.0 * spread, 0.0, 20.0 + z_shift), (5.0 * vs, 22.0 * vs, 13.0 * vs),
                      side * -8.0, TISSUE_CSF),
            # Frontal horn.
            Ellipsoid((side * 9.0 * spread, -20.0, 8.0 + z_shift), (5.5 * vs, 9.0 * vs, 9.0 * vs),
                      side * -20.0, TISSUE_CSF),
            # Atrium and occipital horn.
            Ellipsoid((side * 16.0 * spread, 24.0, 9.0 + z_shift), (6.0 * vs, 9.0 * vs, 8.0 * vs),
                      side * 25.0, TISSUE_CSF),
            # Thalamus and head of the caudate nucleus.
            Ellipsoid((side * 11.0, 8.0, -4.0 + z_shift), (8.0, 13.0, 10.0), side * -10.0,
                      TISSUE_GREY),
            Ellipsoid((side * 15.0 * spread, -16.0, 6.0 + z_shift), (4.5, 8.0, 9.0), side * -15.0,
                      TISSUE_GREY),
        ]
    # Third ventricle: a thin midline slit.
    structures.append(Ellipsoid((0.0, 2.0, -6.0 + z_shift), (2.0 * v, 12.0, 10.0), 0.0, TISSUE_CSF))

    return tuple(
        Ellipsoid(
            tuple(c * scale for c in e.centre),
            tuple(a * scale for a in e.semi_axes),
            e.angle_deg,
            e.tissue,
        )
        for e in structures
    )


def sample_head(rng: np.random.Generator) -> HeadParams:
    """Draw the anatomy and acquisition settings of one subject from ``rng``."""
    scale = float(rng.uniform(0.92, 1.08))
    white_hu = float(rng.uniform(25.0, 30.0))
    diploe_hu = float(rng.uniform(700.0, 950.0))
    return HeadParams(
        centre_mm=(float(rng.uniform(-6, 6)), float(rng.uniform(-6, 6)), float(rng.uniform(-4, 4))),
        tilt=(float(rng.uniform(-0.06, 0.06)), float(rng.uniform(-0.10, 0.10))),
        rotation_deg=float(rng.uniform(-8.0, 8.0)),
        semi_axes_mm=(
            74.0 * scale * float(rng.uniform(0.96, 1.04)),
            93.0 * scale * float(rng.uniform(0.96, 1.04)),
            95.0 * scale,
        ),
        outline_harmonics=_harmonics(rng, (2, 3, 4), 0.025),
        scalp_mm=float(rng.uniform(2.5, 6.0)),
        skull_mm=float(rng.uniform(5.0, 8.5)),
        skull_harmonics=_harmonics(rng, (1, 3), 0.12),
        csf_rim_mm=float(rng.uniform(0.5, 2.0)),
        grey_mm=float(rng.uniform(2.5, 4.0)),
        gyral_amplitude_mm=float(rng.uniform(1.0, 2.5)),
        gyral_harmonics=_harmonics(rng, rng.integers(14, 32, size=3), 1.0),
        gyral_drift=float(rng.uniform(-0.06, 0.06)),
        sulcus_order=int(rng.integers(22, 34)),
        sulcus_phase=float(rng.uniform(0, 2 * np.pi)),
        sulcus_drift=float(rng.uniform(-0.05, 0.05)),
        sulcus_depth_mm=float(rng.uniform(4.0, 9.0)),
        structures=_sample_structures(rng, scale),
        scalp_hu=float(rng.uniform(-40.0, 20.0)),
        bone_table_hu=diploe_hu + float(rng.uniform(350.0, 600.0)),
        bone_diploe_hu=diploe_hu,
        csf_hu=float(rng.uniform(2.0, 12.0)),
        grey_hu=white_hu + float(rng.uniform(6.0, 10.0)),
        white_hu=white_hu,
        noise_sd_hu=float(rng.uniform(3.0, 6.0)),
    )


@dataclass
class PhantomSlice:
    """One noise-free slice and its tissue maps, all (H, W).

    Attributes:
        hu: float32 HU.
        brain: bool, inside the inner table of the skull (intracranial).
        parenchyma: float32 in [0, 1], fraction of grey or white matter
            (excludes CSF in sulci, the subarachnoid rim and the ventricles).
        brain_depth_mm: float32, distance below the brain surface along the
            ray from the head centre; negative outside the brain.
    """

    hu: np.ndarray
    brain: np.ndarray
    parenchyma: np.ndarray
    brain_depth_mm: np.ndarray


@dataclass
class PhantomVolume:
    """A noise-free series: the fields of ``PhantomSlice`` stacked to (S, H, W)."""

    hu: np.ndarray
    brain: np.ndarray
    parenchyma: np.ndarray
    brain_depth_mm: np.ndarray
    geometry: SeriesGeometry


# Angular patterns are evaluated on a table of this many polar angles and looked
# up per pixel, so a pixel costs one arctan2 and no cosines. Binning shifts the
# angle by at most 2*pi/8192 rad, which moves the highest (33rd) harmonic by 0.026 rad.
ANGLE_BINS = 8192
_TABLE_THETA = np.linspace(-np.pi, np.pi, ANGLE_BINS, endpoint=False)


def _fourier(harmonics, drift_phase: float = 0.0) -> np.ndarray:
    """Evaluate a Fourier series on the angle table."""
    total = np.zeros(ANGLE_BINS)
    for order, amplitude, phase in harmonics:
        total += amplitude * np.cos(order * _TABLE_THETA + phase + drift_phase)
    return total.astype(np.float32)


def inside_fraction(depth_mm: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Return the fraction of each pixel inside a boundary, given its signed depth (mm) below it."""
    return np.clip(0.5 + depth_mm * np.float32(1.0 / pixel_mm), 0.0, 1.0)


def _ellipse_depth(u, v, semi_a, semi_b) -> np.ndarray:
    """Return the signed distance (mm) below an ellipse boundary, along the ray from its centre."""
    rho = np.sqrt((u * np.float32(1.0 / semi_a)) ** 2 + (v * np.float32(1.0 / semi_b)) ** 2)
    radius = np.hypot(u, v)
    return ray_to_boundary(radius, rho, min(semi_a, semi_b)) - radius


def ray_to_boundary(radius: np.ndarray, rho: np.ndarray, centre_value: float) -> np.ndarray:
    """Return the distance from a shape's centre to its boundary along each pixel's ray.

    ``rho`` is the pixel's normalised radius (1 on the boundary). The ray is
    undefined at the centre itself, which gets ``centre_value``.
    """
    at_centre = rho < 1e-6
    return np.where(at_centre, np.float32(centre_value), radius / np.where(at_centre, 1.0, rho))


def _structure_membership(
    e: Ellipsoid, u, v, z: float, pixel_mm: float
) -> tuple[np.ndarray, tuple[slice, slice]] | None:
    """Compute the pixel fractions of a structure in the slice at ``z`` within its bounding box.

    Returns None when the structure misses the slice or the image, else the
    fractions and the (rows, columns) box they cover.
    """
    cx, cy, cz = e.centre
    a, b, c = e.semi_axes
    dz = z - cz
    if abs(dz) >= c:
        return None
    shrink = np.sqrt(1.0 - (dz / c) ** 2)

    # Pixels within the circumscribed circle plus a margin for the edge ramp.
    reach = max(a, b) * shrink + 2 * pixel_mm
    near = (u - cx) ** 2 + (v - cy) ** 2 <= reach**2
    rows = np.flatnonzero(near.any(axis=1))
    cols = np.flatnonzero(near.any(axis=0))
    if rows.size == 0:
        return None
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))

    angle = np.deg2rad(e.angle_deg)
    du, dv = u[box] - np.float32(cx), v[box] - np.float32(cy)
    pu = np.float32(np.cos(angle)) * du + np.float32(np.sin(angle)) * dv
    pv = np.float32(-np.sin(angle)) * du + np.float32(np.cos(angle)) * dv
    return inside_fraction(_ellipse_depth(pu, pv, a * shrink, b * shrink), pixel_mm), box


def render_slice(head: HeadParams, z_mm: float, size: int, pixel_spacing_mm: float) -> PhantomSlice:
    """Render the noise-free axial slice of ``head`` at height ``z_mm``.

    Args:
        head: subject anatomy from ``sample_head``.
        z_mm: slice height in patient coordinates (mm).
        size: rows and columns.
        pixel_spacing_mm: in-plane spacing.

    Returns:
        The slice in HU with its brain mask, parenchyma fraction and brain depth.
    """
    px = pixel_spacing_mm
    coords = ((np.arange(size) - (size - 1) / 2) * px).astype(np.float32)
    cx, cy, cz = head.centre_mm
    z = z_mm - cz
    dx = coords[None, :] - np.float32(cx + head.tilt[0] * z)
    dy = coords[:, None] - np.float32(cy + head.tilt[1] * z)

    # Head frame: undo the subject's in-plane rotation.
    rot = np.deg2rad(head.rotation_deg)
    cos_r, sin_r = np.float32(np.cos(rot)), np.float32(np.sin(rot))
    u = cos_r * dx + sin_r * dy
    v = -sin_r * dx + cos_r * dy
    radius = np.hypot(u, v)
    # The polar angle is undefined at the head centre, where any unit vector will do.
    at_centre = radius == 0
    safe_radius = np.where(at_centre, np.float32(1.0), radius)
    cos_t = np.where(at_centre, np.float32(1.0), u / safe_radius)
    sin_t = v / safe_radius
    theta = np.arctan2(v, u)
    bins_per_radian = np.float32(ANGLE_BINS / (2 * np.pi))
    bins = (theta * bins_per_radian + np.float32(ANGLE_BINS / 2)).astype(np.intp)
    bins %= ANGLE_BINS

    def lookup(table):
        return table[bins]

    outline = lookup(1.0 + _fourier(head.outline_harmonics))

    def depth_below(offset_mm):
        # Surface of the ellipsoid shrunk inward by offset_mm, cut at height z.
        a, b, c = (s - offset_mm for s in head.semi_axes_mm)
        shrink = np.sqrt(np.clip(1.0 - (z / c) ** 2, 0.0, None)).astype(np.float32)
        ray = a * b / np.sqrt((b * cos_t) ** 2 + (a * sin_t) ** 2)
        return ray * shrink * outline - radius

    # The skull is thicker at the front and back than at the temples.
    skull_table = 1.0 - 0.2 * np.cos(2 * _TABLE_THETA) + _fourier(head.skull_harmonics)
    skull_mm = lookup((head.skull_mm * skull_table).astype(np.float32))
    inner_table_mm = head.scalp_mm + skull_mm
    depth_head = depth_below(0.0)
    depth_skull = depth_below(head.scalp_mm)
    depth_cranium = depth_below(inner_table_mm)
    depth_brain = depth_below(inner_table_mm + head.csf_rim_mm)

    in_head = inside_fraction(depth_head, px)
    in_skull = inside_fraction(depth_skull, px)
    in_cranium = inside_fraction(depth_cranium, px)
    in_brain = inside_fraction(depth_brain, px)

    # Dense outer and inner tables around the diploe.
    bone_pos = np.clip(depth_skull / skull_mm, 0.0, 1.0)
    table = np.maximum(np.exp(-(bone_pos / 0.22) ** 2), np.exp(-((1.0 - bone_pos) / 0.22) ** 2))
    bone_hu = head.bone_diploe_hu + (head.bone_table_hu - head.bone_diploe_hu) * table

    # Cortex: a grey band whose inner edge undulates (gyri), cut by CSF clefts (sulci).
    gyral_wave = _fourier(head.gyral_harmonics, head.gyral_drift * z) / 3
    gyri = lookup(head.gyral_amplitude_mm * gyral_wave)
    in_white = inside_fraction(depth_brain - head.grey_mm - gyri, px)
    cleft = _fourier(((head.sulcus_order, 1.0, head.sulcus_phase),), head.sulcus_drift * z)
    in_sulcus = lookup(np.clip((cleft - 0.92) / 0.06, 0.0, 1.0)) * inside_fraction(
        head.sulcus_depth_mm - depth_brain, px
    )

    in_ventricle = np.zeros_like(radius)
    in_deep_grey = np.zeros_like(radius)
    for structure in head.structures:
        found = _structure_membership(structure, u, v, z, px)
        if found is None:
            continue
        membership, box = found
        target = in_ventricle if structure.tissue == TISSUE_CSF else in_deep_grey
        np.maximum(target[box], membership, out=target[box])

    tissue_hu = head.grey_hu + (head.white_hu - head.grey_hu) * in_white
    tissue_hu += (head.grey_hu - tissue_hu) * in_deep_grey
    parenchyma = in_brain * (1.0 - in_sulcus) * (1.0 - in_ventricle)

    # Paint from the outside in. Each layer blends over the previous one by its pixel fraction.
    hu = np.full_like(radius, AIR_HU)
    hu += (head.scalp_hu - hu) * in_head
    hu += (bone_hu - hu) * in_skull
    hu += (head.csf_hu - hu) * in_cranium
    hu += (tissue_hu - hu) * parenchyma

    return PhantomSlice(
        hu=hu.astype(np.float32),
        brain=in_cranium >= 0.5,
        parenchyma=parenchyma.astype(np.float32),
        brain_depth_mm=depth_brain.astype(np.float32),
    )


def render_volume(head: HeadParams, geometry: SeriesGeometry) -> PhantomVolume:
    """Render every slice of ``geometry`` for ``head`` (noise-free)."""
    slices = [
        render_slice(head, z, geometry.size, geometry.pixel_spacing_mm)
        for z in geometry.slice_positions_mm
    ]
    return PhantomVolume(
        hu=np.stack([s.hu for s in slices]),
        brain=np.stack([s.brain for s in slices]),
        parenchyma=np.stack([s.parenchyma for s in slices]),
        brain_depth_mm=np.stack([s.brain_depth_mm for s in slices]),
        geometry=geometry,
    )


def add_noise(hu: np.ndarray, noise_sd_hu: float, rng: np.random.Generator) -> np.ndarray:
    """Return ``hu`` plus white Gaussian noise of standard deviation ``noise_sd_hu``."""
    noise = rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(noise_sd_hu)
    return hu + noise


def quantize_hu(hu: np.ndarray) -> np.ndarray:
    """Round HU to int16 within the 12-bit CT range [-1024, 3071] that both writers store."""
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
