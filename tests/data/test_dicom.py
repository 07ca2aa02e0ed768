"""DICOM reading on small files written here with pydicom."""

import logging
import random
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import convert_color_space
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from medanomaly.data.dicom import LoadResult, SkippedFile, SliceImage, _redact, load_dicom
from medanomaly.data.readers import is_dicom_file

PATIENT_NAME = "Quokkaberg^Zephyrine"
PATIENT_ID = "PID-7741-QX"
BIRTH_DATE = "19230417"
ACCESSION = "ACC99887766"
DESCRIPTION = "Wombatfield head study"


def make_dataset(
    pixels,
    *,
    photometric="MONOCHROME2",
    bits_stored=None,
    slope=None,
    intercept=None,
    position=None,
    orientation=(1, 0, 0, 0, 1, 0),
    instance=None,
    series_uid=None,
    modality="CT",
):
    """Build an image dataset; pixels are (rows, columns), (frames, rows, columns) or RGB."""
    pixels = np.asarray(pixels)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sop_class = CTImageStorage if modality == "CT" else SecondaryCaptureImageStorage
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = BIRTH_DATE
    ds.AccessionNumber = ACCESSION
    ds.StudyDescription = DESCRIPTION

    colour = photometric in ("RGB", "YBR_FULL")
    if colour:
        frames = pixels.shape[0] if pixels.ndim == 4 else 1
        rows, columns = pixels.shape[-3:-1]
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
    else:
        frames = pixels.shape[0] if pixels.ndim == 3 else 1
        rows, columns = pixels.shape[-2:]
        ds.SamplesPerPixel = 1
    if pixels.ndim == (4 if colour else 3):
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = rows, columns
    ds.PhotometricInterpretation = photometric
    bits_allocated = pixels.dtype.itemsize * 8
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored or bits_allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    if position is not None:
        ds.ImagePositionPatient = list(position)
        ds.ImageOrientationPatient = list(orientation)
    if instance is not None:
        ds.InstanceNumber = instance
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    return ds


def write(path, ds, **save_options):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_options.setdefault("enforce_file_format", True)
    ds.save_as(path, **save_options)
    return path


def ct_pixels(seed=0, shape=(16, 20)):
    """Stored CT values for slope 1, intercept -1024: HU from -1000 to 1000."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-1000, 1000, shape) + 1024).astype(np.int16)


def write_series(folder, count, names, series_uid=None, **options):
    """Write ``count`` slices at z = 0, 2.5, 5, ... under the given file names."""
    series_uid = series_uid or generate_uid()
    for z_index, name in enumerate(names[:count]):
        pixels = np.full((8, 8), 100 * z_index, dtype=np.int16)
        pixels[0, 0] = 1000  # not constant
        ds = make_dataset(
            pixels, position=(0.0, 0.0, 2.5 * z_index), series_uid=series_uid, **options
        )
        write(Path(folder) / name, ds)
    return series_uid


def test_ct_rescale_and_brain_window(tmp_path):
    stored = ct_pixels()
    path = write(tmp_path / "ct.dcm", make_dataset(stored, slope=1, intercept=-1024))
    result = load_dicom(path, preset="brain")
    hu = stored.astype(np.float64) - 1024
    expected = np.clip((hu - 0.0) / 80.0, 0, 1)
    assert isinstance(result, LoadResult)
    assert result.files_read == 1
    assert result.skipped == []
    assert result.slices[0].array.shape == (1, 16, 20)
    assert result.slices[0].array.dtype == np.float32
    np.testing.assert_allclose(result.slices[0].array[0], expected, atol=1e-6)


def test_fractional_rescale(tmp_path):
    stored = np.arange(64, dtype=np.uint16).reshape(8, 8) * 10
    path = write(tmp_path / "a.dcm", make_dataset(stored, slope=0.5, intercept=-100))
    result = load_dicom(path, preset="window:400:0")
    expected = np.clip((stored * 0.5 - 100 + 200) / 400, 0, 1)
    np.testing.assert_allclose(result.slices[0].array[0], expected, atol=1e-6)


def test_signed_int16(tmp_path):
    hu = np.array([[-1024, -500], [0, 3000]], dtype=np.int16)
    path = write(tmp_path / "s.dcm", make_dataset(hu, slope=1, intercept=0))
    result = load_dicom(path, preset="window:2000:0")
    np.testing.assert_allclose(result.slices[0].array[0], [[0.0, 0.25], [0.5, 1.0]])


@pytest.mark.parametrize("preset", [None, "minmax", "window:3000:1000", "percentile:2:98"])
def test_monochrome1_matches_monochrome2(tmp_path, preset):
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 4096, (12, 10)).astype(np.uint16)
    mono2 = make_dataset(pixels, bits_stored=12, slope=2, intercept=-500)
    mono1 = make_dataset(4095 - pixels, bits_stored=12, slope=2, intercept=-500,
                         photometric="MONOCHROME1")
    first = load_dicom(write(tmp_path / "m2.dcm", mono2), preset=preset).slices[0].array
    second = load_dicom(write(tmp_path / "m1.dcm", mono1), preset=preset).slices[0].array
    np.testing.assert_allclose(second, first, atol=1e-6)


def test_eight_bit(tmp_path):
    pixels = np.array([[0, 51], [102, 255]], dtype=np.uint8)
    path = write(tmp_path / "u8.dcm", make_dataset(pixels, modality="OT"))
    result = load_dicom(path, preset="minmax")
    np.testing.assert_allclose(result.slices[0].array[0], [[0.0, 0.2], [0.4, 1.0]], atol=1e-6)


def test_twelve_bit_ignores_high_bits(tmp_path):
    values = np.array([[0, 1000], [2000, 4095]], dtype=np.uint16)
    # Bits 12-15 are outside Bits Stored 12 and must not change the value.
    stored = values | np.uint16(0xF000)
    path = write(tmp_path / "b12.dcm", make_dataset(stored, bits_stored=12, modality="OT"))
    result = load_dicom(path, preset="window:4095:2047.5")
    np.testing.assert_allclose(result.slices[0].array[0], values / 4095.0, atol=1e-6)


def test_signed_twelve_bit(tmp_path):
    values = np.array([[-2048, -1], [0, 2047]], dtype=np.int16)
    stored = (values.astype(np.int32) & 0x0FFF).astype(np.uint16).view(np.int16)
    path = write(tmp_path / "s12.dcm", make_dataset(stored, bits_stored=12))
    result = load_dicom(path, preset="window:4095:-0.5")
    np.testing.assert_allclose(result.slices[0].array[0], (values + 2048) / 4095.0, atol=1e-6)


def test_rgb_scaled_by_bit_depth(tmp_path):
    rng = np.random.default_rng(8)
    pixels = rng.integers(0, 256, (6, 7, 3)).astype(np.uint8)
    path = write(tmp_path / "rgb.dcm", make_dataset(pixels, photometric="RGB", modality="OT"))
    result = load_dicom(path)
    array = result.slices[0].array
    assert array.shape == (3, 6, 7)
    np.testing.assert_allclose(array, pixels.transpose(2, 0, 1) / 255.0, atol=1e-6)


def test_ybr_full_converted_to_rgb(tmp_path):
    rng = np.random.default_rng(9)
    rgb = rng.integers(0, 256, (6, 7, 3)).astype(np.uint8)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    path = write(tmp_path / "ybr.dcm", make_dataset(ybr, photometric="YBR_FULL", modality="OT"))
    array = load_dicom(path).slices[0].array
    np.testing.assert_allclose(array, rgb.transpose(2, 0, 1) / 255.0, atol=2.5 / 255)


def test_multiframe_one_slice_per_frame(tmp_path):
    frames = np.stack([np.full((5, 6), 10 * i, dtype=np.uint16) for i in range(4)])
    frames[:, 0, 0] = 1000
    path = write(tmp_path / "mf.dcm", make_dataset(frames, modality="OT"))
    result = load_dicom(path, preset="minmax")
    assert [item.index for item in result.slices] == [0, 1, 2, 3]
    assert {item.path for item in result.slices} == {str(path)}
    levels = [float(item.array[0, 2, 2]) for item in result.slices]
    assert levels == sorted(levels)
    assert levels[0] == 0.0


def test_rgb_multiframe(tmp_path):
    frames = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    frames[1, ..., 0] = 255
    path = write(tmp_path / "rgbmf.dcm", make_dataset(frames, photometric="RGB", modality="OT"))
    result = load_dicom(path)
    assert len(result.slices) == 2
    assert result.slices[1].array.shape == (3, 4, 4)
    assert result.slices[1].array[0].min() == 1.0


def test_slices_ordered_by_position(tmp_path):
    names = [f"IM{i}" for i in range(6)]
    random.Random(1).shuffle(names)
    write_series(tmp_path, 6, names)
    result = load_dicom(tmp_path, preset="window:1000:500")
    levels = [float(item.array[0, 4, 4]) for item in result.slices]
    assert levels == sorted(levels)
    assert len(set(levels)) == 6


def test_shuffled_names_same_order(tmp_path):
    names = [f"slice_{i:02d}.dcm" for i in range(7)]
    write_series(tmp_path / "a", 7, names)
    shuffled = names[:]
    random.Random(5).shuffle(shuffled)
    write_series(tmp_path / "b", 7, shuffled)
    first = load_dicom(tmp_path / "a", preset="window:1000:500")
    second = load_dicom(tmp_path / "b", preset="window:1000:500")
    for one, two in zip(first.slices, second.slices):
        np.testing.assert_array_equal(one.array, two.array)


def test_position_overrides_instance_number(tmp_path):
    names = ["a.dcm", "b.dcm", "c.dcm"]
    write_series(tmp_path, 3, names)
    # Instance numbers that run against the positions must not decide the order.
    for instance, name in zip((3, 2, 1), names):
        ds = pydicom.dcmread(tmp_path / name)
        ds.InstanceNumber = instance
        ds.save_as(tmp_path / name)
    result = load_dicom(tmp_path)
    assert [Path(item.path).name for item in result.slices] == names


def test_oblique_orientation_order(tmp_path):
    orientation = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # sagittal: normal is -x
    series = generate_uid()
    for step, name in enumerate(["p.dcm", "q.dcm", "r.dcm"]):
        pixels = np.full((4, 4), step, dtype=np.int16)
        pixels[0, 0] = 50
        ds = make_dataset(pixels, position=(-5.0 * step, 0, 0), orientation=orientation,
                          series_uid=series)
        write(tmp_path / name, ds)
    result = load_dicom(tmp_path)
    assert [Path(item.path).name for item in result.slices] == ["p.dcm", "q.dcm", "r.dcm"]


def test_missing_position_uses_instance_number(tmp_path):
    series = generate_uid()
    for instance, name in zip((2, 3, 1), ("x.dcm", "y.dcm", "z.dcm")):
        pixels = np.full((4, 4), instance, dtype=np.int16)
        pixels[0, 0] = 99
        write(tmp_path / name, make_dataset(pixels, instance=instance, series_uid=series))
    result = load_dicom(tmp_path)
    assert [Path(item.path).name for item in result.slices] == ["z.dcm", "x.dcm", "y.dcm"]


def test_missing_instance_number_uses_file_name(tmp_path, caplog):
    series = generate_uid()
    for name in ("c.dcm", "a.dcm", "b.dcm"):
        pixels = np.arange(16, dtype=np.int16).reshape(4, 4)
        write(tmp_path / name, make_dataset(pixels, series_uid=series))
    with caplog.at_level(logging.WARNING, logger="medanomaly.data.dicom"):
        result = load_dicom(tmp_path)
    assert [Path(item.path).name for item in result.slices] == ["a.dcm", "b.dcm", "c.dcm"]
    assert "ordered by file name" in caplog.text


def test_two_series_in_one_folder(tmp_path):
    first = write_series(tmp_path, 3, ["s1_a", "s1_b", "s1_c"])
    second = write_series(tmp_path, 2, ["s2_a", "s2_b"])
    result = load_dicom(tmp_path)
    keys = [item.series for item in result.slices]
    assert len(set(keys)) == 2
    assert keys[:3] == [keys[0]] * 3
    assert keys[3:] == [keys[3]] * 2
    for key in set(keys):
        assert key.startswith("series-")
        assert len(key) == len("series-") + 8
        assert first not in key
        assert second not in key


def test_nested_folders(tmp_path):
    write(tmp_path / "p1" / "s1" / "one.dcm", make_dataset(ct_pixels(1)))
    write(tmp_path / "p2" / "deeper" / "s2" / "two.dcm", make_dataset(ct_pixels(2)))
    result = load_dicom(tmp_path)
    assert result.files_read == 2
    assert len(result.slices) == 2


def test_bad_files_skipped_batch_goes_on(tmp_path, caplog):
    write(tmp_path / "good.dcm", make_dataset(ct_pixels()))

    no_pixels = make_dataset(ct_pixels())
    del no_pixels.PixelData
    write(tmp_path / "report.dcm", no_pixels)

    truncated = write(tmp_path / "truncated.dcm", make_dataset(ct_pixels(shape=(64, 64))))
    truncated.write_bytes(truncated.read_bytes()[:-3000])

    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))

    with caplog.at_level(logging.DEBUG, logger="medanomaly.data.dicom"):
        result = load_dicom(tmp_path)

    reasons = {Path(item.path).name: item.reason for item in result.skipped}
    assert result.files_read == 1
    assert len(result.slices) == 1
    assert set(reasons) == {"report.dcm", "truncated.dcm", "notes.txt", "picture.png"}
    assert "no pixel data" in reasons["report.dcm"]
    assert "could not be decoded" in reasons["truncated.dcm"]
    assert "not a DICOM file" in reasons["notes.txt"]
    assert "not a DICOM file" in reasons["picture.png"]
    assert all(isinstance(item, SkippedFile) for item in result.skipped)
    assert "Read 1 of 5" in caplog.text
    assert "4 files skipped" in caplog.text
    assert "truncated.dcm" in caplog.text


def test_constant_slice_flagged(tmp_path, caplog):
    path = write(tmp_path / "flat.dcm", make_dataset(np.full((6, 6), 40, dtype=np.int16)))
    write(tmp_path / "normal.dcm", make_dataset(ct_pixels()))
    with caplog.at_level(logging.WARNING, logger="medanomaly.data.dicom"):
        result = load_dicom(tmp_path)
    flags = {Path(item.path).name: item.constant for item in result.slices}
    assert flags == {"flat.dcm": True, "normal.dcm": False}
    flat = next(item for item in result.slices if item.constant)
    assert not flat.array.any()
    assert str(path) in caplog.text
    assert "index 0" in caplog.text


def test_headerless_file(tmp_path):
    ds = make_dataset(ct_pixels(), slope=1, intercept=-1024)
    ds.file_meta = FileMetaDataset()
    path = tmp_path / "raw_dataset"
    ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert is_dicom_file(path)
    result = load_dicom(path, preset="brain")
    expected = np.clip((ct_pixels().astype(float) - 1024) / 80.0, 0, 1)
    np.testing.assert_allclose(result.slices[0].array[0], expected, atol=1e-6)


@pytest.mark.parametrize(
    "syntax",
    [RLELossless, JPEG2000Lossless, DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian],
)
def test_encoded_transfer_syntaxes(tmp_path, syntax):
    stored = ct_pixels(shape=(64, 48))
    reference = load_dicom(write(tmp_path / "plain.dcm", make_dataset(stored)), preset="minmax")
    ds = make_dataset(stored)
    if syntax.is_compressed:
        ds.compress(syntax)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    path = write(tmp_path / "encoded.dcm", ds, implicit_vr=syntax.is_implicit_VR)
    result = load_dicom(path, preset="minmax")
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(result.slices[0].array, reference.slices[0].array)


@pytest.mark.filterwarnings("ignore:Invalid value for VR IS")
def test_no_patient_identifiers(tmp_path, caplog):
    write(tmp_path / "good.dcm", make_dataset(ct_pixels(), slope=1, intercept=-1024))
    truncated = write(tmp_path / "bad.dcm", make_dataset(ct_pixels(shape=(64, 64))))
    truncated.write_bytes(truncated.read_bytes()[:-2000])
    frames = make_dataset(ct_pixels())
    frames.NumberOfFrames = 1
    path = write(tmp_path / "frames.dcm", frames)
    # An invalid Number of Frames value, as pydicom would refuse to write it.
    path.write_bytes(path.read_bytes().replace(b"IS\x02\x001 ", b"IS\x02\x001A"))
    no_rows = make_dataset(ct_pixels())
    del no_rows.Rows
    write(tmp_path / "no_rows.dcm", no_rows)
    write(tmp_path / "flat.dcm", make_dataset(np.zeros((4, 4), dtype=np.int16)))

    with caplog.at_level(logging.DEBUG):
        result = load_dicom(tmp_path)

    reasons = {Path(item.path).name: item.reason for item in result.skipped}
    assert set(reasons) == {"bad.dcm", "frames.dcm", "no_rows.dcm"}
    assert "Number of Frames '1A'" in reasons["frames.dcm"]
    assert "Rows" in reasons["no_rows.dcm"]
    text = repr(result) + caplog.text + "".join(record.getMessage() for record in caplog.records)
    for value in (PATIENT_NAME, "Quokkaberg", "Zephyrine", PATIENT_ID, BIRTH_DATE,
                  ACCESSION, DESCRIPTION):
        assert value not in text, value


def test_redact_removes_identifiers():
    ds = make_dataset(ct_pixels())
    message = f"bad value 'Quokkaberg^Zephyrine' near {PATIENT_ID} and Zephyrine"
    cleaned = _redact(message, ds)
    assert "Quokkaberg" not in cleaned
    assert "Zephyrine" not in cleaned
    assert PATIENT_ID not in cleaned
    assert "bad value" in cleaned


def test_result_types(tmp_path):
    path = write(tmp_path / "one.dcm", make_dataset(ct_pixels()))
    item = load_dicom(path).slices[0]
    assert isinstance(item, SliceImage)
    assert item.path == str(path)
    assert item.index == 0
    assert item.array.flags["C_CONTIGUOUS"]


def test_unknown_preset_raises(tmp_path):
    path = write(tmp_path / "one.dcm", make_dataset(ct_pixels()))
    with pytest.raises(ValueError, match="brain"):
        load_dicom(path, preset="not-a-preset")


def test_missing_path_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        load_dicom(tmp_path / "missing")


def test_is_dicom_file(tmp_path):
    path = write(tmp_path / "one.dcm", make_dataset(ct_pixels()))
    text = tmp_path / "t.txt"
    text.write_text("hello")
    assert is_dicom_file(path)
    assert not is_dicom_file(text)
    assert not is_dicom_file(tmp_path)
    assert not is_dicom_file(tmp_path / "absent.dcm")
