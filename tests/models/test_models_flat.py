"""Flat float32 buffers: exact round trips, and every kind of mismatch refused before writing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sealfl.errors import ConfigError, ProtocolError
from sealfl.models import FlatManifest, TensorSpec
from sealfl.models.nn import build_model, flatten, load_flat, manifest_of


@pytest.fixture
def pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(1)
    a = build_model("resnet8")
    torch.manual_seed(2)
    b = build_model("resnet8")
    # Make the running statistics differ too, so the buffers' transfer is visible.
    a.train()
    with torch.no_grad():
        a(torch.rand(8, 3, 32, 32))
    return a.eval(), b.eval()


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_round_trip_through_bytes_gives_the_same_model(pair: tuple) -> None:
    a, b = pair
    values, manifest = flatten(a)
    assert values.dtype == np.dtype("<f4") and values.ndim == 1
    assert manifest.numel == values.size
    load_flat(b, values.tobytes(), FlatManifest.from_json(manifest.to_json()))
    float_names = [k for k, v in a.state_dict().items() if v.is_floating_point()]
    for k in float_names:
        assert torch.equal(a.state_dict()[k], b.state_dict()[k]), k
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_round_trip_from_an_array_and_a_big_endian_array(pair: tuple) -> None:
    a, b = pair
    values, manifest = flatten(a)
    load_flat(b, values.astype(">f4"), manifest)
    assert torch.equal(a.fc.weight, b.fc.weight)


def test_manifest_lists_floats_in_state_order_without_step_counters() -> None:
    model = build_model("resnet8")
    manifest = manifest_of(model)
    assert manifest.names[:2] == ("conv1.weight", "bn1.weight")
    assert "bn1.running_var" in manifest.names
    assert not any(n.endswith("num_batches_tracked") for n in manifest.names)
    params_only = manifest_of(model, buffers=False)
    assert params_only.names == tuple(n for n, _ in model.named_parameters())
    assert params_only.numel == 75_290


def test_parameters_only_buffer_leaves_running_statistics_alone(pair: tuple) -> None:
    a, b = pair
    before = b.bn1.running_mean.clone()
    values, manifest = flatten(a, buffers=False)
    load_flat(b, values, manifest, buffers=False)
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    assert torch.equal(b.bn1.running_mean, before)


def _expect_refusal(model: torch.nn.Module, buffer: object, manifest: FlatManifest, match: str):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ProtocolError, match=match):
        load_flat(model, buffer, manifest)  # type: ignore[arg-type]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a refused load wrote values"


def _edit(manifest: FlatManifest, index: int, **changes: object) -> FlatManifest:
    entries = list(manifest.entries)
    old = entries[index]
    entries[index] = TensorSpec(
        name=changes.get("name", old.name),  # type: ignore[arg-type]
        shape=changes.get("shape", old.shape),  # type: ignore[arg-type]
        dtype=old.dtype,
    )
    return FlatManifest(tuple(entries))


def test_refuses_a_renamed_tensor(pair: tuple) -> None:
    a, b = pair
    values, manifest = flatten(a)
    bad = _edit(manifest, 3, name="bn1.running_avg")
    _expect_refusal(
        b, values, bad, r"entry 3: expected 'bn1.running_mean' .* got 'bn1.running_avg'"
    )


def test_refuses_a_reshaped_tensor_of_the_same_size(pair: tuple) -> None:
    a, b = pair
    values, manifest = flatten(a)
    # conv1.weight is (16, 3, 3, 3); (48, 3, 3) has the same number of values.
    bad = _edit(manifest, 0, shape=(48, 3, 3))
    _expect_refusal(b, values, bad, r"expected 'conv1.weight' \[16, 3, 3, 3\].*\[48, 3, 3\]")


def test_refuses_missing_and_extra_tensors(pair: tuple) -> None:
    a, b = pair
    values, manifest = flatten(a)
    last = manifest.entries[-1]
    short = FlatManifest(manifest.entries[:-1])
    _expect_refusal(b, values[: -last.numel], short, "first missing: 'fc.bias'")
    extra = FlatManifest((*manifest.entries, TensorSpec("fc.extra", (2,), "float32")))
    _expect_refusal(
        b,
        np.concatenate([values, [0, 0]]).astype(np.float32),
        extra,
        "first unexpected: 'fc.extra'",
    )


def test_refuses_a_reordered_manifest(pair: tuple) -> None:
    a, b = pair
    values, manifest = flatten(a)
    entries = list(manifest.entries)
    entries[0], entries[1] = entries[1], entries[0]
    _expect_refusal(b, values, FlatManifest(tuple(entries)), "entry 0: expected 'conv1.weight'")


@pytest.mark.parametrize("delta", [-1, 1])
def test_refuses_a_buffer_of_the_wrong_length(pair: tuple, delta: int) -> None:
    a, b = pair
    values, manifest = flatten(a)
    raw = values.tobytes()
    buf = raw[:-4] if delta < 0 else raw + b"\0\0\0\0"
    _expect_refusal(b, buf, manifest, f"expected {manifest.numel:,} float32 values")
    _expect_refusal(b, raw[:-1], manifest, "not a whole number of float32 values")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_refuses_non_finite_values_naming_the_tensor(pair: tuple, bad: float) -> None:
    a, b = pair
    values, manifest = flatten(a)
    _, start, _ = next(s for s in manifest.slices() if s[0].name == "layer2.0.conv1.weight")
    values[start + 5] = bad
    _expect_refusal(
        b, values.tobytes(), manifest, r"tensor 'layer2.0.conv1.weight' holds .* at element 5"
    )


def test_refuses_arrays_of_another_dtype_or_shape(pair: tuple) -> None:
    a, b = pair
    values, manifest = flatten(a)
    _expect_refusal(b, values.astype(np.float64), manifest, "dtype must be float32, got float64")
    _expect_refusal(b, values.astype(np.int32), manifest, "dtype must be float32, got int32")
    _expect_refusal(b, values.reshape(1, -1), manifest, "must be 1-D")


def test_refuses_another_architecture(pair: tuple) -> None:
    a, _ = pair
    values, manifest = flatten(a)
    other = build_model("resnet20")
    _expect_refusal(other, values, manifest, "manifest does not match the model")


def test_flatten_refuses_a_model_that_is_not_float32() -> None:
    model = build_model("small-cnn", in_channels=1, image_size=8).double()
    with pytest.raises(ConfigError, match=r"'features.0.weight' is torch.float64"):
        flatten(model)


# -- the manifest's wire form ------------------------------------------------------------------


def test_manifest_json_is_canonical_and_its_digest_tracks_the_model() -> None:
    m20 = manifest_of(build_model("resnet20"))
    again = manifest_of(build_model("resnet20"))
    assert m20.to_json() == again.to_json() and m20.digest() == again.digest()
    assert m20.digest() != manifest_of(build_model("resnet32")).digest()
    assert json.loads(m20.to_json())["format"] == "sealfl-flat/1"
    assert FlatManifest.from_json(m20.to_json().encode()) == m20


def _doc(entries: list[object], fmt: str = "sealfl-flat/1") -> str:
    return json.dumps({"format": fmt, "entries": entries})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", "not JSON"),
        ("[]", r"expected keys \['entries', 'format'\], got list"),
        (_doc([], fmt="sealfl-flat/2"), "format must be 'sealfl-flat/1'"),
        (json.dumps({"format": "sealfl-flat/1", "entries": {}}), "entries must be a list"),
        (_doc([{"name": "a", "shape": [1]}]), r"entry 0: expected keys"),
        (_doc([{"name": "a", "shape": 3, "dtype": "float32"}]), "shape must be a list"),
        (_doc([{"name": "a", "shape": [-1], "dtype": "float32"}]), "non-negative integers"),
        (_doc([{"name": "a", "shape": [2.0], "dtype": "float32"}]), "non-negative integers"),
        (_doc([{"name": "a", "shape": [True], "dtype": "float32"}]), "non-negative integers"),
        (_doc([{"name": "a", "shape": [1], "dtype": "float64"}]), "dtype must be one of"),
        (_doc([{"name": "a b", "shape": [1], "dtype": "float32"}]), "name must be"),
        (_doc([{"name": 5, "shape": [1], "dtype": "float32"}]), "name must be"),
        (
            _doc([{"name": "a", "shape": [1], "dtype": "float32"}] * 2),
            "entry 1: name 'a' appears twice",
        ),
        (
            _doc([{"name": "a", "shape": [1 << 20, 1 << 20], "dtype": "float32"}]),
            "more than 4294967296 values",
        ),
    ],
)
def test_from_json_refuses_malformed_manifests(text: str, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        FlatManifest.from_json(text)


_names = st.from_regex(r"[a-z][a-z0-9_.]{0,12}", fullmatch=True)
_specs = st.lists(
    st.tuples(_names, st.lists(st.integers(0, 5), max_size=4)), max_size=8, unique_by=lambda t: t[0]
)


@settings(max_examples=60, deadline=None)
@given(_specs)
def test_json_round_trip_and_split_views(raw: list[tuple[str, list[int]]]) -> None:
    manifest = FlatManifest(tuple(TensorSpec(n, tuple(s), "float32") for n, s in raw))
    assert FlatManifest.from_json(manifest.to_json()) == manifest
    values = np.arange(manifest.numel, dtype=np.float32)
    views = manifest.split(manifest.check_buffer(values.tobytes()))
    assert list(views) == [n for n, _ in raw]
    joined = np.concatenate([v.reshape(-1) for v in views.values()] + [np.zeros(0, np.float32)])
    np.testing.assert_array_equal(joined, values)
