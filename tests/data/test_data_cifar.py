"""CIFAR-10/100 binary files: the channel-major layout, directories, and every refusal located."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sealfl.data import (
    ImageSet,
    load_cifar10,
    load_cifar100,
    read_cifar10_file,
    read_cifar100_file,
    write_cifar10,
)
from sealfl.data.cifar import CIFAR10_CLASSES
from sealfl.errors import ConfigError


def _rows(labels: list[list[int]], seed: int) -> tuple[bytes, np.ndarray]:
    """Hand-build rows: label bytes, then 3,072 pixel bytes (R plane, G plane, B plane)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    out = bytearray()
    for lab, row in zip(labels, pixels, strict=True):
        out += bytes(lab) + row.tobytes()
    return bytes(out), pixels


def test_reads_pixels_channel_major(tmp_path: Path) -> None:
    blob, pixels = _rows([[3], [9], [0]], seed=1)
    (tmp_path / "b.bin").write_bytes(blob)
    data = read_cifar10_file(tmp_path / "b.bin")
    assert data.images.shape == (3, 3, 32, 32) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.labels, [3, 9, 0])
    assert data.class_names == CIFAR10_CLASSES
    # Byte 1 + c*1024 + r*32 + col of a row is channel c, row r, column col.
    for c, r, col in [(0, 0, 0), (1, 5, 7), (2, 31, 31), (0, 31, 0)]:
        assert data.images[1, c, r, col] == pixels[1, c * 1024 + r * 32 + col]


def test_refuses_a_truncated_file_naming_row_and_offset(tmp_path: Path) -> None:
    blob, _ = _rows([[1], [2], [3]], seed=2)
    p = tmp_path / "data_batch_1.bin"
    p.write_bytes(blob[:-100])
    with pytest.raises(
        ConfigError, match=r"data_batch_1.bin: .*row 2 \(offset 6146\) has only 2973 bytes"
    ):
        read_cifar10_file(p)


def test_refuses_a_label_out_of_range_naming_row_and_offset(tmp_path: Path) -> None:
    blob, _ = _rows([[1], [2], [10]], seed=3)
    p = tmp_path / "b.bin"
    p.write_bytes(blob)
    with pytest.raises(
        ConfigError,
        match=r"b.bin: row 2 \(byte offset 6146\): label 10 is out of range, expected 0-9",
    ):
        read_cifar10_file(p)


def test_refuses_empty_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "e.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"e.bin: empty file"):
        read_cifar10_file(tmp_path / "e.bin")
    with pytest.raises(ConfigError, match=r"nope.bin: cannot read CIFAR file"):
        read_cifar10_file(tmp_path / "nope.bin")


def _cifar10_dir(root: Path, batches: list[int]) -> Path:
    d = root / "cifar-10-batches-bin"
    d.mkdir()
    for k in batches:
        (d / f"data_batch_{k}.bin").write_bytes(_rows([[k % 10], [(k + 1) % 10]], seed=k)[0])
    (d / "test_batch.bin").write_bytes(_rows([[7]], seed=99)[0])
    return d


def test_loads_train_in_number_order_and_test_from_the_parent_dir(tmp_path: Path) -> None:
    d = _cifar10_dir(tmp_path, list(range(1, 11)))
    (d / "batches.meta.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n\n")
    train = load_cifar10(tmp_path, "train")  # the parent: finds cifar-10-batches-bin/
    # data_batch_10 comes after data_batch_9 (numbers, not names, are sorted).
    expected = [lab for k in range(1, 11) for lab in (k % 10, (k + 1) % 10)]
    np.testing.assert_array_equal(train.labels, expected)
    assert train.class_names[0] == "c0"
    test = load_cifar10(d, "test")
    np.testing.assert_array_equal(test.labels, [7])


def test_refuses_a_gap_in_the_batch_numbers(tmp_path: Path) -> None:
    d = _cifar10_dir(tmp_path, [1, 2, 4])
    with pytest.raises(ConfigError, match=r"without a gap; missing data_batch_3.bin"):
        load_cifar10(d, "train")


def test_refuses_a_directory_without_cifar_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no data_batch_1.bin here or in cifar-10-batches-bin/"):
        load_cifar10(tmp_path, "train")
    with pytest.raises(ConfigError, match="split must be 'train' or 'test'"):
        _cifar10_dir(tmp_path, [1])
        load_cifar10(tmp_path, "valid")  # type: ignore[arg-type]


def test_refuses_a_names_file_with_the_wrong_count(tmp_path: Path) -> None:
    d = _cifar10_dir(tmp_path, [1])
    (d / "batches.meta.txt").write_text("a\nb\n")
    with pytest.raises(ConfigError, match=r"batches.meta.txt: expected 10 class names"):
        load_cifar10(d, "test")


def test_cifar100_fine_and_coarse_labels(tmp_path: Path) -> None:
    d = tmp_path / "cifar-100-binary"
    d.mkdir()
    blob, pixels = _rows([[19, 99], [0, 0], [4, 57]], seed=5)
    (d / "train.bin").write_bytes(blob)
    (d / "coarse_label_names.txt").write_text("\n".join(f"super{i}" for i in range(20)))
    fine = load_cifar100(tmp_path, "train")
    coarse = load_cifar100(tmp_path, "train", label="coarse")
    np.testing.assert_array_equal(fine.labels, [99, 0, 57])
    np.testing.assert_array_equal(coarse.labels, [19, 0, 4])
    assert fine.num_classes == 100 and fine.class_names[57] == "57"
    assert coarse.class_names[19] == "super19"
    assert fine.images[2, 2, 3, 4] == pixels[2, 2 * 1024 + 3 * 32 + 4]


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (
            [[0, 0], [20, 5]],
            r"row 1 \(byte offset 3074\): coarse label 20 is out of range, expected 0-19",
        ),
        ([[0, 100]], r"row 0 \(byte offset 1\): fine label 100 is out of range, expected 0-99"),
    ],
)
def test_cifar100_refuses_labels_out_of_range(
    tmp_path: Path, labels: list[list[int]], match: str
) -> None:
    (tmp_path / "train.bin").write_bytes(_rows(labels, seed=6)[0])
    with pytest.raises(ConfigError, match=match):
        read_cifar100_file(tmp_path / "train.bin")


def test_cifar100_refuses_cifar10_rows(tmp_path: Path) -> None:
    (tmp_path / "test.bin").write_bytes(_rows([[1], [2]], seed=7)[0])  # 2 x 3,073 bytes
    with pytest.raises(ConfigError, match="is not a whole number of 3074-byte rows"):
        load_cifar100(tmp_path, "test")


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    data = ImageSet(
        rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8),
        np.array([0, 9, 4, 4, 1], dtype=np.int64),
        CIFAR10_CLASSES,
    )
    back = read_cifar10_file(write_cifar10(data, tmp_path / "out.bin"))
    np.testing.assert_array_equal(back.images, data.images)
    np.testing.assert_array_equal(back.labels, data.labels)
    assert (tmp_path / "out.bin").stat().st_size == 5 * 3073


def test_write_refuses_images_that_are_not_cifar_sized(tmp_path: Path) -> None:
    data = ImageSet(np.zeros((1, 1, 8, 8), np.uint8), np.zeros(1, np.int64), ("a",))
    with pytest.raises(ConfigError, match=r"3x32x32 images, got \[1, 8, 8\]"):
        write_cifar10(data, tmp_path / "x.bin")
