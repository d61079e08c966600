"""Property tests: homomorphic sums and matrix products against exact plaintext arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sealfl import he
from sealfl.errors import EncodingOverflowError
from sealfl.he import PackedLayout, PaillierPrivateKey

pytestmark = pytest.mark.filterwarnings("ignore", category=he.WeakKeyWarning)
SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
LAYOUT = PackedLayout(fraction_bits=24, integer_bits=14, headroom_bits=4)
TOP = 2.0**14 - 2.0**-24  # largest value of LAYOUT
packed_floats = st.floats(min_value=-(2.0**14), max_value=TOP, allow_nan=False, width=64)
unpacked_floats = st.floats(min_value=-(2.0**20) + 1, max_value=2.0**20 - 1, allow_nan=False)


def rounded(values: np.ndarray, bits: int) -> np.ndarray:
    return np.rint(np.ldexp(values, bits)).astype(np.int64).astype(object)


@SETTINGS
@given(data=st.data(), count=st.integers(1, 16), length=st.integers(1, 50))
def test_packed_sum_equals_sum_of_inputs(
    key1024: PaillierPrivateKey, data: st.DataObject, count: int, length: int
) -> None:
    parts = [
        np.array(data.draw(st.lists(packed_floats, min_size=length, max_size=length)))
        for _ in range(count)
    ]
    total = he.sum_vectors([he.encrypt_packed(key1024.public_key, p, layout=LAYOUT) for p in parts])
    exact = sum(rounded(p, 24) for p in parts)
    decrypted = he.decrypt_vector(key1024, total)
    assert np.array_equal(decrypted, np.ldexp(exact.astype(np.float64), -24))


@SETTINGS
@given(
    values=st.lists(unpacked_floats, min_size=1, max_size=8),
    other=st.lists(unpacked_floats, min_size=8, max_size=8),
)
def test_unpacked_sum_and_difference_are_exact(
    key1024: PaillierPrivateKey, values: list[float], other: list[float]
) -> None:
    a = np.array(values)
    b = np.array(other[: len(values)])
    ea = he.encrypt_vector(key1024.public_key, a, fraction_bits=20)
    eb = he.encrypt_vector(key1024.public_key, b, fraction_bits=20)
    ia, ib = rounded(a, 20), rounded(b, 20)
    assert he.decrypt_vector(key1024, ea + eb).tolist() == [float(x) / 2**20 for x in ia + ib]
    assert he.decrypt_vector(key1024, ea - eb).tolist() == [float(x) / 2**20 for x in ia - ib]


@SETTINGS
@given(
    value=st.floats(min_value=2.0**14, max_value=1e12)
    | st.floats(min_value=-1e12, max_value=-(2.0**14) - 2.0**-23),
)
def test_packed_out_of_range_is_detected(key1024: PaillierPrivateKey, value: float) -> None:
    with pytest.raises(EncodingOverflowError):
        he.encrypt_packed(key1024.public_key, [0.5, value], layout=LAYOUT)


@SETTINGS
@given(extra=st.integers(1, 100))
def test_too_many_summands_is_detected(key1024: PaillierPrivateKey, extra: int) -> None:
    vector = he.encrypt_packed(key1024.public_key, [TOP, -(2.0**14)], layout=LAYOUT)
    with pytest.raises(EncodingOverflowError, match="summands"):
        he.sum_vectors([vector] * (LAYOUT.max_summands + extra))


@SETTINGS
@given(data=st.data(), rows=st.integers(1, 12), cols=st.integers(1, 6))
def test_matrix_products_match_numpy(
    key1024: PaillierPrivateKey, data: st.DataObject, rows: int, cols: int
) -> None:
    elements = st.floats(min_value=-1000, max_value=1000, allow_nan=False)
    X = data.draw(hnp.arrays(np.float64, (rows, cols), elements=elements))
    w = data.draw(hnp.arrays(np.float64, cols, elements=elements))
    v = data.draw(hnp.arrays(np.float64, rows, elements=elements))
    enc_w = he.encrypt_vector(key1024.public_key, w, fraction_bits=16, integer_bits=10)
    enc_v = he.encrypt_vector(key1024.public_key, v, fraction_bits=16, integer_bits=10)
    Xi, wi, vi = rounded(X, 12), rounded(w, 16), rounded(v, 16)
    z = he.decrypt_vector(key1024, he.matvec(X, enc_w, fraction_bits=12))
    g = he.decrypt_vector(key1024, he.vecmat(enc_v, X, fraction_bits=12))
    assert z.tolist() == [float(x) / 2**28 for x in Xi.dot(wi)]
    assert g.tolist() == [float(x) / 2**28 for x in vi.dot(Xi)]
    # Against numpy on the unrounded inputs: each product term is off by at most
    # |x|·2^-17 + |w|·2^-13 + 2·2^-30 (w rounded to 16, X to 12 fraction bits), plus float slack.
    slack_z = 1e-12 * (np.abs(X) @ np.abs(w)) + 1e-9
    z_bound = np.abs(X).sum(axis=1) * 2.0**-17 + np.abs(w).sum() * 2.0**-13 + cols * 2.0**-29
    assert np.all(np.abs(z - X @ w) <= z_bound + slack_z)
    slack_g = 1e-12 * (np.abs(v) @ np.abs(X)) + 1e-9
    g_bound = np.abs(X).sum(axis=0) * 2.0**-17 + np.abs(v).sum() * 2.0**-13 + rows * 2.0**-29
    assert np.all(np.abs(g - v @ X) <= g_bound + slack_g)
