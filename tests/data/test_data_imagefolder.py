"""Image folders of PNG/JPEG: labels from sorted directories, exact pixels, bad files named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sealfl.data import read_image_folder
from sealfl.errors import ConfigError


def _png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    made = {}
    for cls, names in (("dog", ["b.png", "a.PNG"]), ("cat", ["x.png"])):
        for n in names:
            px = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)  # height 6, width 5
            _png(tmp_path / cls / n, px)
            made[f"{cls}/{n}"] = px
    smooth = np.broadcast_to(np.array([200, 90, 30], np.uint8), (6, 5, 3)).copy()
    Image.fromarray(smooth).save(tmp_path / "cat" / "y.jpg", format="JPEG", quality=95)
    made["cat/y.jpg"] = smooth
    (tmp_path / "README.txt").write_text("files beside the classes are ignored")
    (tmp_path / "dog" / ".DS_Store").write_bytes(b"\0")
    return tmp_path, made


def test_reads_classes_in_sorted_order_with_exact_png_pixels(folder: tuple) -> None:
    root, made = folder
    data = read_image_folder(root)
    assert data.class_names == ("cat", "dog")
    np.testing.assert_array_equal(data.labels, [0, 0, 1, 1])
    assert data.images.shape == (4, 3, 6, 5)
    # dog's files in name order: "a.PNG" before "b.png"; pixels come back channel-major.
    np.testing.assert_array_equal(data.images[2], made["dog/a.PNG"].transpose(2, 0, 1))
    np.testing.assert_array_equal(data.images[3], made["dog/b.png"].transpose(2, 0, 1))
    # The JPEG is lossy but close to its source.
    err = np.abs(data.images[1].astype(int) - made["cat/y.jpg"].transpose(2, 0, 1).astype(int))
    assert err.max() <= 8


def test_grayscale_and_resize(folder: tuple) -> None:
    root, _ = folder
    data = read_image_folder(root, mode="L", size=(8, 4))
    assert data.images.shape == (4, 1, 8, 4)


def test_refuses_images_of_different_sizes_without_resize(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "1.png", np.zeros((4, 4, 3), np.uint8))
    _png(tmp_path / "a" / "2.png", np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ConfigError, match=r"2\.png: image is 5x4 \(width x height\), expected 4x4"):
        read_image_folder(tmp_path)
    assert read_image_folder(tmp_path, size=(4, 4)).images.shape == (2, 3, 4, 4)


def test_refuses_a_corrupt_image_naming_it(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "ok.png", np.zeros((4, 4, 3), np.uint8))
    good = (tmp_path / "a" / "ok.png").read_bytes()
    (tmp_path / "a" / "zz.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(ConfigError, match=r"zz\.png: not a readable image"):
        read_image_folder(tmp_path)


def test_refuses_a_file_that_claims_png_but_is_another_format(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "a" / "fake.png", format="BMP")
    with pytest.raises(ConfigError, match=r"fake\.png: expected a PNG or JPEG image, got BMP"):
        read_image_folder(tmp_path)


def test_refuses_non_image_files_and_nested_dirs(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "1.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "a" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"notes\.txt: not an image file"):
        read_image_folder(tmp_path)
    (tmp_path / "a" / "notes.txt").unlink()
    (tmp_path / "a" / "sub").mkdir()
    with pytest.raises(ConfigError, match="nested directory in class 'a'"):
        read_image_folder(tmp_path)


def test_refuses_empty_roots_and_classes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no class subdirectories"):
        read_image_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="class 'empty' has no images"):
        read_image_folder(tmp_path)
    with pytest.raises(ConfigError, match="no such directory"):
        read_image_folder(tmp_path / "missing")


@pytest.mark.parametrize("side", [12, 40])  # 144 px: Pillow warns; 1,600 px: Pillow raises
def test_refuses_a_decompression_bomb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side: int
) -> None:
    # Pillow's limit lowered so a small file trips it: the refusal path is the real one.
    _png(tmp_path / "a" / "big.png", np.zeros((side, side, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ConfigError, match=r"big\.png: not a readable image.*decompression bomb"):
        read_image_folder(tmp_path)
