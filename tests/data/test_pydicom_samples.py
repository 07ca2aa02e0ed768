"""Every DICOM test file shipped inside the pydicom wheel, read from disk.

The files are listed from the installed package folder, never through
``pydicom.data.get_testdata_file``, which may download missing files.
Each file either decodes to finite values in [0, 1] or, if listed in
``CANNOT_DECODE``, is skipped with a reason that contains the listed text.
"""

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medanomaly.data.dicom import load_dicom

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
SAMPLES = sorted(TEST_FILES.rglob("*.dcm"))

# Files that legitimately give no image, with text the skip reason must contain.
CANNOT_DECODE = {
    # No Pixel Data element: structured reports, RT objects, waveforms, a
    # directory and datasets that hold only a few elements.
    "ExplVR_BigEndNoMeta.dcm": "no pixel data",
    "ExplVR_LitEndNoMeta.dcm": "no pixel data",
    "UN_sequence.dcm": "no pixel data",
    "DICOMDIR-empty.dcm": "no pixel data",
    "empty_charset_LEI.dcm": "no pixel data",
    "no_meta_group_length.dcm": "no pixel data",
    "priv_SQ.dcm": "no pixel data",
    "reportsi.dcm": "no pixel data",
    "reportsi_with_empty_number_tags.dcm": "no pixel data",
    "rtplan.dcm": "no pixel data",
    "rtplan_truncated.dcm": "no pixel data",
    "rtstruct.dcm": "no pixel data",
    "test-SR.dcm": "no pixel data",
    "waveform_ecg.dcm": "no pixel data",
    # Broken on purpose.
    "MR_truncated.dcm": "less than expected",  # pixel data cut short
    "badVR.dcm": "Number of Frames '1A'",  # IS value that is not a number
    "meta_missing_tsyntax.dcm": "Bits Allocated",  # Pixel Data without the image pixel module
    "nested_priv_SQ.dcm": "Bits Allocated",  # Pixel Data without the image pixel module
    "no_meta.dcm": "not a DICOM file",  # the dataset starts with a stray byte
    # Four codestream bytes overwritten with a Sequence Delimiter tag.
    "JPEG2000-embedded-sequence-delimiter.dcm": "could not be decoded",
    # A non-conformant 12-bit JPEG (invalid spectral selection in the SOS
    # marker) that libjpeg and Pillow reject. pydicom 3.0's GDCM plugin rejects
    # 12-bit JPEG Extended too, so python-gdcm would not help.
    "JPEG-lossy.dcm": "could not be decoded",
}

pytestmark = [
    pytest.mark.skipif(not SAMPLES, reason=f"no pydicom test files under {TEST_FILES}"),
    # pydicom warns about the invalid values in some files on purpose.
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def test_expected_failures_present():
    names = {path.name for path in SAMPLES}
    assert set(CANNOT_DECODE) <= names


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.name)
def test_sample(path):
    result = load_dicom(path)
    if path.name in CANNOT_DECODE:
        assert result.slices == []
        assert [item.path for item in result.skipped] == [str(path)]
        assert CANNOT_DECODE[path.name] in result.skipped[0].reason
        return

    assert result.skipped == [], result.skipped
    assert result.slices, path.name
    for item in result.slices:
        assert item.array.dtype == np.float32
        assert item.array.ndim == 3
        assert item.array.shape[0] in (1, 3)
        assert np.isfinite(item.array).all()
        assert item.array.min() >= 0.0
        assert item.array.max() <= 1.0


def test_rgb_variants_agree():
    # The same 100x100 test pattern stored as RGB and YBR, raw and JPEG, JPEG-LS,
    # JPEG 2000 and RLE compressed, at 8, 16 and 32 bits.
    reference = load_dicom(TEST_FILES / "SC_rgb_rle.dcm").slices[0].array
    # The 256x256 and 3x3 files hold other images.
    other_images = ("SC_rgb_jpeg.dcm", "SC_rgb_jpeg_dcmd.dcm", "SC_rgb_jpeg_app14_dcmd.dcm")
    variants = [
        path
        for path in SAMPLES
        if path.name.startswith(("SC_rgb", "SC_ybr"))
        and "small_odd" not in path.name
        and path.name not in other_images
    ]
    assert len(variants) >= 15
    for path in variants:
        # The 2-frame files hold the pattern and its inverse; frame 0 is the pattern.
        first = load_dicom(path).slices[0]
        difference = float(np.abs(first.array - reference).mean())
        assert difference < 0.02, path.name


def test_mr_small_encodings_identical():
    # One MR image stored little and big endian, implicit VR, RLE, JPEG-LS and
    # JPEG 2000 lossless: every decoding must give the same slice.
    names = [
        "MR_small.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm", "MR_small_implicit.dcm",
        "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
        "MR_small_padded.dcm",
    ]
    reference = load_dicom(TEST_FILES / names[0], preset="minmax").slices[0].array
    for name in names[1:]:
        array = load_dicom(TEST_FILES / name, preset="minmax").slices[0].array
        np.testing.assert_array_equal(array, reference, err_msg=name)


def test_multiframe_samples():
    frames = {"examples_ybr_color.dcm": 30, "rtdose.dcm": 15, "SC_rgb_rle_32bit_2frame.dcm": 2}
    for name, count in frames.items():
        result = load_dicom(TEST_FILES / name)
        assert [item.index for item in result.slices] == list(range(count)), name


def test_whole_folder_in_one_call():
    result = load_dicom(TEST_FILES)
    skipped = {Path(item.path).name for item in result.skipped}
    assert set(CANNOT_DECODE) <= skipped
    assert result.files_read >= len(SAMPLES) - len(CANNOT_DECODE)
