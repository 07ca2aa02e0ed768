"""Panels of flagged slices written by `medanomaly score`."""

import numpy as np
from matplotlib.image import imread

from medanomaly import reporting


def _panel(path, title):
    rng = np.random.default_rng(0)
    image = rng.random((1, 32, 32)).astype(np.float32)
    reporting.save_panel(image, image, image[0] ** 2, path, title)
    return imread(path)


def test_panel_short_title_size(tmp_path):
    panel = _panel(tmp_path / "short.png", "a.dcm [frame/slice 0]  score 0.2 > threshold 0.1")
    # 7.6 x 2.9 inches at 100 dpi, with no tight bounding box.
    assert panel.shape[:2] == (290, 760)


def test_panel_long_title_wraps(tmp_path):
    long_path = "/data/" + "series_folder/" * 20 + "a.dcm"
    panel = _panel(tmp_path / "long.png", f"{long_path} [frame/slice 0]  score 0.2 > threshold 0.1")
    # The figure grows by 0.15 inch per extra title line and keeps its width.
    assert panel.shape[1] == 760
    assert panel.shape[0] > 290
