"""Resizing, padding, channel conversion and 2-D image decoding."""

import numpy as np
import pytest
import torch
from monai.transforms import Resize, SpatialPad
from PIL import Image

from medanomaly.data.transforms import (
    LUMA_WEIGHTS,
    ToModelInput,
    ToModelInputd,
    convert_channels,
    fitted_size,
    load_image_file,
    resize_batch,
    resize_to_model,
    to_model_input,
)


def test_gray_to_rgb_repeats_channel():
    gray = torch.rand(1, 5, 7)
    rgb = convert_channels(gray, 3)
    assert rgb.shape == (3, 5, 7)
    for channel in range(3):
        assert torch.equal(rgb[channel], gray[0])


def test_rgb_to_gray_uses_bt601_luma():
    rgb = torch.zeros(3, 2, 2)
    rgb[0, 0, 0] = 1.0  # pure red
    rgb[1, 0, 1] = 1.0  # pure green
    rgb[2, 1, 0] = 1.0  # pure blue
    rgb[:, 1, 1] = 1.0  # white
    gray = convert_channels(rgb, 1)
    assert gray.shape == (1, 2, 2)
    assert gray[0, 0, 0].item() == pytest.approx(LUMA_WEIGHTS[0])
    assert gray[0, 0, 1].item() == pytest.approx(LUMA_WEIGHTS[1])
    assert gray[0, 1, 0].item() == pytest.approx(LUMA_WEIGHTS[2])
    assert gray[0, 1, 1].item() == pytest.approx(1.0)


def test_batch_channel_conversion():
    batch = torch.rand(4, 3, 6, 6)
    assert convert_channels(batch, 1).shape == (4, 1, 6, 6)
    assert convert_channels(batch[:, :1], 3).shape == (4, 3, 6, 6)


def test_unsupported_channel_count_raises():
    with pytest.raises(ValueError, match="4 channels"):
        convert_channels(torch.rand(4, 5, 5), 3)


def test_resize_mode_stretches_to_square():
    image = torch.rand(1, 20, 40)
    out = resize_to_model(image, 16, "resize")
    assert out.shape == (1, 16, 16)


def test_pad_mode_keeps_aspect_ratio():
    image = torch.ones(1, 20, 40)
    out = resize_to_model(image, 16, "pad")
    assert out.shape == (1, 16, 16)
    # 20x40 scaled to 8x16, then 4 rows of zeros above and below.
    assert torch.all(out[0, :4] == 0)
    assert torch.all(out[0, 12:] == 0)
    assert torch.allclose(out[0, 4:12], torch.ones(8, 16))


def test_pad_and_resize_agree_on_squares():
    image = torch.rand(3, 10, 10)
    assert torch.equal(resize_to_model(image, 24, "pad"), resize_to_model(image, 24, "resize"))


def test_fitted_size_keeps_thin_images():
    assert fitted_size(1, 1000, 32) == (1, 32)
    assert fitted_size(300, 200, 30) == (30, 20)


def test_upsampling_matches_monai():
    image = torch.rand(3, 10, 14)
    monai = SpatialPad((32, 32))(Resize((23, 32), mode="bilinear", anti_aliasing=False)(image))
    ours = resize_batch(image.unsqueeze(0), 32, "pad")[0]
    assert torch.allclose(ours, monai.as_tensor(), atol=1e-6)


def test_downsampling_stays_in_unit_range():
    image = torch.rand(1, 1, 512, 512)
    out = resize_batch(image, 128)
    assert out.shape == (1, 1, 128, 128)
    assert out.min().item() >= 0.0
    assert out.max().item() <= 1.0


def test_to_model_input_output_contract():
    out = to_model_input(np.random.rand(1, 30, 50).astype(np.float32), 32, 3, "pad")
    assert type(out) is torch.Tensor
    assert out.dtype == torch.float32
    assert out.shape == (3, 32, 32)
    assert out.min().item() >= 0.0
    assert out.max().item() <= 1.0


def test_to_model_input_rejects_2d_array():
    with pytest.raises(ValueError, match="shape"):
        to_model_input(np.zeros((8, 8), np.float32), 8, 1)


def test_transform_classes_check_arguments():
    with pytest.raises(ValueError, match="resize_mode"):
        ToModelInput(32, 3, resize_mode="crop")
    with pytest.raises(ValueError, match="in_channels"):
        ToModelInput(32, 2)
    with pytest.raises(ValueError, match="image_size"):
        ToModelInput(0, 3)


def test_dictionary_transform():
    data = {"image": torch.rand(1, 10, 10), "label": 1}
    out = ToModelInputd("image", 16, 3)(data)
    assert out["image"].shape == (3, 16, 16)
    assert out["label"] == 1


def test_load_gray_png(tmp_path):
    pixels = np.arange(12 * 20, dtype=np.uint8).reshape(12, 20)
    Image.fromarray(pixels).save(tmp_path / "gray.png")
    array = load_image_file(tmp_path / "gray.png")
    assert array.shape == (1, 12, 20)
    assert array.dtype == np.float32
    assert np.allclose(array[0], pixels / 255.0)


def test_load_rgb_png_keeps_row_order(tmp_path):
    pixels = np.zeros((6, 9, 3), np.uint8)
    pixels[0, :, 0] = 255  # top row red
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    array = load_image_file(tmp_path / "rgb.png")
    assert array.shape == (3, 6, 9)
    assert np.all(array[0, 0] == 1.0)
    assert np.all(array[0, 1:] == 0.0)


def test_load_rgba_drops_alpha(tmp_path):
    pixels = np.full((4, 4, 4), 200, np.uint8)
    Image.fromarray(pixels, "RGBA").save(tmp_path / "rgba.png")
    assert load_image_file(tmp_path / "rgba.png").shape == (3, 4, 4)


def test_load_16bit_png_divides_by_65535(tmp_path):
    pixels = np.array([[0, 65535], [32768, 1000]], np.uint16)
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    array = load_image_file(tmp_path / "deep.png")
    assert np.allclose(array[0], pixels / 65535.0, atol=1e-6)


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".tif"])
def test_load_other_formats(tmp_path, suffix):
    pixels = np.random.default_rng(0).integers(0, 255, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / f"image{suffix}")
    array = load_image_file(tmp_path / f"image{suffix}")
    assert array.shape == (3, 10, 12)
    assert 0.0 <= array.min() <= array.max() <= 1.0


def test_float_tiff_min_max_scaled(tmp_path):
    pixels = np.array([[-100.0, 0.0], [50.0, 300.0]], np.float32)
    Image.fromarray(pixels, "F").save(tmp_path / "float.tif")
    array = load_image_file(tmp_path / "float.tif")
    assert array.min() == pytest.approx(0.0)
    assert array.max() == pytest.approx(1.0)


def test_undecodable_file_raises(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(Exception):
        load_image_file(tmp_path / "broken.png")
