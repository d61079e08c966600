import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealfl.errors import ConfigError, ProtocolError
from sealfl.mpc.binary import GateMaterial, LeafGate
from sealfl.mpc.compare import Comparator, carry_gate
from sealfl.mpc.dealer import deal_query, expand_server, session_mask
from sealfl.mpc.plan import Output, QueryPlan
from sealfl.mpc.prg import Prg, fresh_seed
from sealfl.mpc.ring import decode, encode
from sealfl.mpc.spline import DEFAULT_MAX_ERROR, sigmoid_spline

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=50))
def test_encode_decode_round_trip(values: list[float]) -> None:
    x = np.array(values)
    np.testing.assert_allclose(decode(encode(x), 20), x, atol=2**-20)


@given(st.lists(finite, min_size=1, max_size=20), st.lists(finite, min_size=1, max_size=20))
def test_ring_sums_and_products_decode(a: list[float], b: list[float]) -> None:
    n = min(len(a), len(b))
    x, y = np.array(a[:n]) / 1e3, np.array(b[:n]) / 1e3
    np.testing.assert_allclose(decode(encode(x) + encode(y), 20), x + y, atol=2**-19)
    np.testing.assert_allclose(decode(encode(x) * encode(y), 40), x * y, atol=1e-3)


def test_encode_refuses_what_does_not_fit() -> None:
    with pytest.raises(ConfigError, match="cannot be encoded"):
        encode(np.array([1.0, 2.0**45]))
    with pytest.raises(ConfigError, match="cannot be encoded"):
        encode(np.array([np.nan]))


def test_prg_streams_are_deterministic_and_independent() -> None:
    seed = fresh_seed()
    a = Prg(seed).words("A", (4, 5))
    assert np.array_equal(a, Prg(seed).words("A", (4, 5)))
    assert not np.array_equal(a, Prg(seed).words("B", (4, 5)))
    assert not np.array_equal(a, Prg(fresh_seed()).words("A", (4, 5)))
    bits = Prg(seed).bits("x", (1000,))
    assert set(np.unique(bits)) == {0, 1}
    with pytest.raises(ConfigError, match="32 bytes, got 3"):
        Prg(b"abc")


def _xor_share(rng: np.random.Generator, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = rng.integers(0, 2**64, size=x.shape, dtype=np.uint64)
    return r, x ^ r


def _words(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(0, 2**64, size=shape, dtype=np.uint64)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(1, 4))
def test_leaf_gate_gives_each_groups_generate_and_propagate(
    seed: int, copies: int, width: int
) -> None:
    # a is party 0's addend (copies blocks wide), b party 1's (one block, shared by every copy).
    rng = np.random.default_rng(seed)
    gate = LeafGate(width=width, copies=copies)
    groups, subsets = 3, len(gate.subsets)
    a, b = _words(rng, groups * width, 2 * copies), _words(rng, groups * width, 2)
    mask_a, mask_b = _words(rng, groups, subsets, 2 * copies), _words(rng, groups, subsets, 2)
    prod_0 = _words(rng, 2, groups, 2 * copies)
    mats = [
        GateMaterial(masks=mask_a, products=prod_0),
        GateMaterial(masks=mask_b, products=gate.correction(mask_a, mask_b, prod_0)),
    ]
    opened = [gate.open(gate.inputs(a), mats[0]), gate.open(gate.inputs(b), mats[1])]
    assert opened[1].shape == (groups, subsets, 2)  # party 1 opens one block, not one per copy
    g, p = gate.close(0, opened[0], opened[1], mats[0]) ^ gate.close(
        1, opened[1], opened[0], mats[1]
    )
    # Plain bit-sliced carry-lookahead of each group of positions.
    wide_b = np.tile(b, (1, copies))
    want_g = np.zeros((groups, 2 * copies), np.uint64)
    want_p = np.full((groups, 2 * copies), np.uint64(2**64 - 1))
    for j in range(width):
        aj, bj = a[j::width], wide_b[j::width]
        want_g = (aj & bj) | ((aj ^ bj) & want_g)
        want_p &= aj ^ bj
    assert np.array_equal(g, want_g) and np.array_equal(p, want_p)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([(2, True), (2, False), (3, True), (4, True), (4, False), (8, False)]),
)
def test_carry_gate_combines_shared_groups(seed: int, shape: tuple[int, bool]) -> None:
    # Random exclusive (G, P) per group, XOR-shared; the gate's shares must add up to the
    # carry-lookahead combination (without the top group's G, which each party adds itself).
    radix, with_p = shape
    rng = np.random.default_rng(seed)
    gate = carry_gate(radix, with_p=with_p)
    g, p = _words(rng, radix, 2, 5), _words(rng, radix, 2, 5)
    g &= ~p  # generate and propagate are exclusive in an adder
    inputs = np.concatenate([g[: radix - 1], p if with_p else p[1:]])
    assert inputs.shape[0] == gate.variables
    shares = _xor_share(rng, inputs)
    masks = [_words(rng, gate.variables, 2, 5) for _ in (0, 1)]
    prod_0 = _words(rng, len(gate.closure), 2, 5)
    mats = [
        gate.material(0, masks[0], prod_0),
        gate.material(1, masks[1], gate.correction(masks[0], masks[1], prod_0)),
    ]
    opened = [gate.open(shares[i], mats[i]) for i in (0, 1)]
    got = gate.close(opened[0], opened[1], mats[0]) ^ gate.close(opened[1], opened[0], mats[1])
    carry = g[0]
    for j in range(1, radix):
        carry = g[j] | (p[j] & carry)
    assert np.array_equal(got[0] ^ g[radix - 1], carry)
    if with_p:
        assert np.array_equal(got[1], np.bitwise_and.reduce(p, axis=0))
    assert got.shape[0] == 1 + with_p


def _compare(z_int: np.ndarray, plan: QueryPlan) -> np.ndarray:
    """Run the comparator of ``plan`` on shares of the ring values ``z_int``."""
    seed, deal = deal_query(plan, session_mask(plan.features))
    from sealfl.mpc.dealer import expand_client

    mats = [expand_client(plan, seed), expand_server(plan, deal)]
    rng = np.random.default_rng(0)
    s0 = rng.integers(0, 2**64, size=z_int.shape, dtype=np.uint64)
    shares = [s0, z_int.view(np.uint64) - s0]
    cmp = plan.compare
    assert cmp is not None
    parties = [Comparator(i, cmp, shares[i], mats[i].gates) for i in (0, 1)]
    assert cmp.rounds == (2 if cmp.bits == 32 else 3)
    for rnd in range(cmp.rounds):
        opened = [p.open(rnd) for p in parties]
        for i in (0, 1):
            parties[i].close(rnd, opened[i], opened[1 - i])
    return parties[0].result() ^ parties[1].result()


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=40))
def test_exact_comparison_with_zero(values: list[int]) -> None:
    z = np.array([*values, 0, -1, 1, 2**62, -(2**62)], dtype=np.int64)
    plan = QueryPlan(rows=z.size, features=1, output=Output.LABEL)
    assert np.array_equal(_compare(z, plan)[:, 0], (z >= 0).astype(np.uint8))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=30))
def test_coarse_comparison_with_knots(values: list[float]) -> None:
    z = np.array(values)
    plan = QueryPlan(rows=z.size, features=1, output=Output.PROBABILITY)
    got = _compare(encode(z, 40).view(np.int64), plan)
    knots = plan.spline.knots
    want = (z[:, None] >= knots).astype(np.uint8)
    # Exact except within two units of the coarse scale (2^-10) from a knot.
    far = np.abs(z[:, None] - knots) > 2 * 2**-10
    assert np.array_equal(got[far], want[far])


def test_spline_error_bound() -> None:
    spline = sigmoid_spline()
    z = np.linspace(-40, 40, 400_001)
    err = np.abs(spline(z) - 1 / (1 + np.exp(-z)))
    assert err.max() <= DEFAULT_MAX_ERROR * 1.001
    # Continuous at every knot, so a comparison that errs near a knot costs almost nothing.
    eps = 1e-9
    jumps = np.abs(spline(spline.knots + eps) - spline(spline.knots - eps))
    assert jumps.max() < 1e-6


def test_server_refuses_dealer_material_of_the_wrong_shape() -> None:
    plan = QueryPlan(rows=3, features=4, output=Output.PROBABILITY)
    _, deal = deal_query(plan, session_mask(4))
    other = QueryPlan(rows=5, features=4, output=Output.PROBABILITY)
    with pytest.raises(ProtocolError, match=r"logit expected uint64\[5\], got uint64\[3\]"):
        expand_server(other, deal)
    k = plan.columns
    with pytest.raises(ProtocolError, match=rf"beta_add expected uint64\[3, {k}\], got none"):
        expand_server(plan, dataclasses.replace(deal, beta_add=None))
    with pytest.raises(ProtocolError, match="session mask has 4 features"):
        deal_query(QueryPlan(rows=1, features=5, output=Output.LOGIT), session_mask(4))


@given(st.lists(st.floats(-(2.0**30), 2.0**30, allow_nan=False), min_size=1, max_size=64))
def test_fast_encoding_rounds_like_rint(values: list[float]) -> None:
    x = np.array(values)
    want = np.rint(x * 2.0**20).astype(np.int64).view(np.uint64)
    assert np.array_equal(encode(x), want)
    buffer = np.empty(x.shape, np.uint64)  # made ahead, as the client does for its rows
    assert encode(x, out=buffer) is buffer and np.array_equal(buffer, want)


def test_largest_query_fits_in_one_message() -> None:
    # The dealer draws a query's material from its header alone, before anyone can check it
    # is deliverable: a query it accepts must fit the channels' message limit, or one header
    # costs the dealer gigabytes for material that can never be sent.
    from sealfl.fl.infer.common import MAX_MESSAGE_BYTES
    from sealfl.mpc.plan import MAX_CELLS, MAX_ROWS
    from sealfl.mpc.wire import deal_to_proto, header_to_proto

    rows = 1024
    plan = QueryPlan(rows=rows, features=1, output=Output.PROBABILITY)
    _, deal = deal_query(plan, session_mask(1))
    per_row = deal_to_proto(deal, header_to_proto(plan, session_id="s", query_id="q")).ByteSize()
    assert per_row / rows * MAX_ROWS < MAX_MESSAGE_BYTES
    assert 8 * MAX_CELLS < MAX_MESSAGE_BYTES  # the masked input X - A
    with pytest.raises(ConfigError, match=r"rows x features must be at most 16777216, got"):
        QueryPlan(rows=1 << 16, features=1 << 10, output=Output.LOGIT)
    with pytest.raises(ConfigError, match=f"rows must be between 1 and {MAX_ROWS}"):
        QueryPlan(rows=MAX_ROWS + 1, features=1, output=Output.LABEL)
