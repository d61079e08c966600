import re
from pathlib import Path

import numpy as np
import pytest

from sealfl.data import breast
from sealfl.errors import ConfigError
from sealfl.models import LogisticRegression, TrainConfig, sigmoid
from sealfl.models.logreg import gradient


@pytest.fixture(scope="module")
def trained() -> LogisticRegression:
    train = [breast.load_split(s) for s in ("homo_guest", "homo_host")]
    X = np.vstack([t.X for t in train])
    y = np.concatenate([t.labels() for t in train])
    model, losses = LogisticRegression.fit(X, y, TrainConfig(epochs=150))
    assert losses[-1] < losses[0]
    return model


def test_accuracy_on_breast_test_split(trained: LogisticRegression) -> None:
    test = breast.load_split("homo_test")
    acc = float(np.mean(trained.predict(test.X) == test.labels()))
    assert acc > 0.93


def test_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(20, 5))
    y = rng.integers(0, 2, size=20).astype(float)
    w = rng.normal(size=5)

    def loss(v: np.ndarray) -> float:
        p = sigmoid(X @ v)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)) + 0.05 * v @ v)

    eps = 1e-6
    numeric = np.array([(loss(w + eps * e) - loss(w - eps * e)) / (2 * eps) for e in np.eye(5)])
    np.testing.assert_allclose(gradient(w, X, y, l2=0.1), numeric, rtol=1e-5, atol=1e-8)


def test_sigmoid_is_stable_at_extremes() -> None:
    out = sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_array_equal(out, [0.0, 0.5, 1.0])


def test_save_load_round_trip(tmp_path, trained: LogisticRegression) -> None:  # type: ignore[no-untyped-def]
    path = trained.save(tmp_path / "m.npz")
    again = LogisticRegression.load(path)
    np.testing.assert_array_equal(again.weights, trained.weights)
    assert LogisticRegression.from_bytes(trained.to_bytes()).n_features == 30


def test_load_refuses_pickled_object_arrays(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "evil.npz"
    np.savez(path, format=np.array("sealfl-logreg-v1"), weights=np.array([object()], dtype=object))
    with pytest.raises(ConfigError, match="not a sealfl model"):
        LogisticRegression.load(path)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"format": np.array("other"), "weights": np.ones(3)}, "expected format"),
        ({"format": np.array("sealfl-logreg-v1"), "weights": np.ones((2, 2))}, "vector"),
        ({"format": np.array("sealfl-logreg-v1"), "weights": np.array([1.0, np.nan])}, "finite"),
        ({"format": np.array("sealfl-logreg-v1"), "weights": np.ones(3, np.float32)}, "float64"),
        ({"weights": np.ones(3)}, "expected arrays"),
    ],
)
def test_load_validates_fields(tmp_path, arrays, message) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ConfigError, match=message):
        LogisticRegression.load(path)


def test_not_an_archive(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a sealfl model"):
        LogisticRegression.load(path)


def test_wrong_input_shape_names_expected_and_got(trained: LogisticRegression) -> None:
    with pytest.raises(ConfigError, match=r"\(rows, 30\), got \(4, 29\)"):
        trained.predict_proba(np.zeros((4, 29)))


def test_a_bare_npy_array_is_not_a_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # np.load returns a plain array, not an archive, for .npy bytes: refused with a reason.
    path = tmp_path / "weights.npy"
    np.save(path, np.ones(30))
    with pytest.raises(ConfigError, match=r"not a sealfl model archive \(a single \.npy array"):
        LogisticRegression.load(path)


def test_save_into_a_missing_directory_names_the_file(
    tmp_path: Path, trained: LogisticRegression
) -> None:
    target = tmp_path / "no-such-dir" / "m.npz"
    with pytest.raises(ConfigError, match=f"cannot write {re.escape(str(target))}"):
        trained.save(target)
    assert not target.parent.exists()
