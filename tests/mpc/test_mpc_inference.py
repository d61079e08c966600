import numpy as np
import pytest

from sealfl.data import breast
from sealfl.errors import ProtocolError
from sealfl.models import LogisticRegression, TrainConfig
from sealfl.mpc.dealer import deal_query, expand_client, session_mask
from sealfl.mpc.parties import ClientParty, Endpoint, deal_locally, evaluate_locally
from sealfl.mpc.plan import Output, QueryPlan
from sealfl.mpc.ring import encode


@pytest.fixture(scope="module")
def model() -> LogisticRegression:
    train = [breast.load_split(s) for s in ("homo_guest", "homo_host")]
    X = np.vstack([t.X for t in train])
    y = np.concatenate([t.labels() for t in train])
    return LogisticRegression.fit(X, y, TrainConfig(epochs=150))[0]


@pytest.fixture(scope="module")
def test_x() -> np.ndarray:
    return breast.load_split("homo_test").X


def _plan(x: np.ndarray, output: Output) -> QueryPlan:
    return QueryPlan(rows=x.shape[0], features=x.shape[1], output=output)


def test_probability_in_mpc_within_1e_3(model: LogisticRegression, test_x: np.ndarray) -> None:
    got, messages = evaluate_locally(_plan(test_x, Output.PROBABILITY), test_x, model.weights)
    assert np.abs(got - model.predict_proba(test_x)).max() <= 1e-3
    assert messages == 4  # two round trips


def test_revealed_logit_within_1e_4(model: LogisticRegression, test_x: np.ndarray) -> None:
    from sealfl.models import sigmoid

    got, messages = evaluate_locally(_plan(test_x, Output.LOGIT), test_x, model.weights)
    assert np.abs(sigmoid(got) - model.predict_proba(test_x)).max() <= 1e-4
    assert messages == 2  # one round trip, like a plaintext call


def test_labels_agree(model: LogisticRegression, test_x: np.ndarray) -> None:
    got, _ = evaluate_locally(_plan(test_x, Output.LABEL), test_x, model.weights)
    assert np.array_equal(got, model.predict(test_x))


@pytest.mark.parametrize("seed", [1, 2])
def test_wide_random_model(seed: int) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(64, 528))
    w = rng.normal(scale=0.1, size=528)
    z = X @ w
    p = 1 / (1 + np.exp(-z))
    got, _ = evaluate_locally(QueryPlan(rows=64, features=528, output=Output.PROBABILITY), X, w)
    assert np.abs(got - p).max() <= 1e-3
    lab, _ = evaluate_locally(QueryPlan(rows=64, features=528, output=Output.LABEL), X, w)
    assert np.array_equal(lab, (z >= 0).astype(np.int64))


def _parties(plan: QueryPlan, x: np.ndarray, w: np.ndarray) -> tuple[Endpoint, Endpoint]:
    client, server = deal_locally(plan, encode(w), session_mask(plan.features))
    client.load(x)
    return Endpoint(client), Endpoint(server)


def test_server_sees_fresh_masks_for_the_same_input() -> None:
    x = np.ones((2, 3))
    plan = QueryPlan(rows=2, features=3, output=Output.LOGIT)
    first = _parties(plan, x, np.ones(3))[0].start()[0][0]
    second = _parties(plan, x, np.ones(3))[0].start()[0][0]
    assert not np.array_equal(first, second)


def test_wrong_shape_from_peer_is_a_protocol_error() -> None:
    plan = QueryPlan(rows=2, features=3, output=Output.LOGIT)
    _, server = _parties(plan, np.ones((2, 3)), np.ones(3))
    with pytest.raises(
        ProtocolError, match=r"linear: array 0 expected uint64\[2, 3\], got uint64\[2, 4\]"
    ):
        server.receive({0: [np.zeros((2, 4), np.uint64)], 1: []})
    with pytest.raises(ProtocolError, match="unexpected level 3"):
        server.receive({3: []})


def test_client_prepares_its_first_comparison_round_before_the_input() -> None:
    # The client's share of the logit, and so its first comparison round, needs no input:
    # it is computed ahead, and a query started without rows is refused, not sent unmasked.
    plan = QueryPlan(rows=2, features=3, output=Output.PROBABILITY)
    b = session_mask(3)
    seed, _ = deal_query(plan, b)
    client = ClientParty(plan, expand_client(plan, seed), encode(np.ones(3)) - b)
    endpoint = Endpoint(client)
    early = endpoint.prepare()
    assert sorted(early) == [1]  # the first comparison round: sent ahead with the prefetch
    with pytest.raises(ProtocolError, match="input must be loaded before the query starts"):
        endpoint.start()
    client.load(np.ones((2, 3)))
    assert sorted(endpoint.start()) == [0]
    with pytest.raises(ProtocolError, match=r"client input expected shape \(2, 3\), got \(3, 2\)"):
        client.load(np.ones((3, 2)))
    with pytest.raises(ProtocolError, match=r"masked model expected uint64\[3\], got int64\[3\]"):
        ClientParty(plan, expand_client(plan, seed), np.ones(3, np.int64))


@pytest.mark.parametrize("output", list(Output))
def test_beaver_linear_layer_agrees(
    output: Output, model: LogisticRegression, test_x: np.ndarray
) -> None:
    from sealfl.mpc import Linear

    plan = QueryPlan(rows=test_x.shape[0], features=30, output=output, linear=Linear.BEAVER)
    got, _ = evaluate_locally(plan, test_x, model.weights)
    if output is Output.LABEL:
        assert np.array_equal(got, model.predict(test_x))
    elif output is Output.LOGIT:
        np.testing.assert_allclose(got, model.logits(test_x), atol=1e-4)
    else:
        assert np.abs(got - model.predict_proba(test_x)).max() <= 1e-3


def test_every_output_is_right_up_to_the_documented_logit_range() -> None:
    # The probability output compares a 32-bit copy of the logit at scale 2^-10 minus knots
    # as far out as +-7.6, so it wraps a few units short of 2^21; the documented bound must
    # leave that margin (logits of 2^21 - 1 came back as probability 0, -(2^21 - 1) as 1).
    from sealfl.mpc.plan import MAX_LOGIT

    z = np.array([MAX_LOGIT, MAX_LOGIT - 0.5, 0.75 * MAX_LOGIT, -MAX_LOGIT, -(MAX_LOGIT - 0.5)])
    x, w = z[:, None], np.ones(1)
    prob, _ = evaluate_locally(QueryPlan(rows=5, features=1, output=Output.PROBABILITY), x, w)
    np.testing.assert_allclose(prob, (z > 0) * 1.0, atol=1e-3)
    label, _ = evaluate_locally(QueryPlan(rows=5, features=1, output=Output.LABEL), x, w)
    np.testing.assert_array_equal(label, (z > 0).astype(np.int64))
    logit, _ = evaluate_locally(QueryPlan(rows=5, features=1, output=Output.LOGIT), x, w)
    np.testing.assert_allclose(logit, z, atol=1e-6)
    assert MAX_LOGIT >= 2**20  # far beyond where the sigmoid saturates


@pytest.mark.parametrize("linear", ["input-owner", "beaver"])
@pytest.mark.parametrize("output", list(Output))
def test_round_trips_is_what_a_query_takes(output: Output, linear: str) -> None:
    # The client stops a query that has not finished after round_trips() calls, so it must
    # be exact for every plan (the Beaver path takes one more than the input-owner one).
    from sealfl.mpc import Linear

    plan = QueryPlan(rows=3, features=4, output=output, linear=Linear(linear))
    _, messages = evaluate_locally(plan, np.ones((3, 4)), np.ones(4))
    assert messages == 2 * plan.round_trips()


def test_probability_error_stays_within_the_documented_bound() -> None:
    # Spline error plus the comparisons' rounding: wrong only within 2^-9 of a knot, where it
    # costs |slope step| * 2^-9. Logits are packed around every knot to provoke exactly that.
    from sealfl.mpc.spline import DEFAULT_MAX_ERROR, sigmoid_spline

    spline = sigmoid_spline()
    rng = np.random.default_rng(7)
    near = spline.knots[:, None] + rng.uniform(-(2**-8), 2**-8, size=(spline.knots.size, 20))
    z = np.concatenate([near.ravel(), rng.uniform(-12, 12, size=500)])
    prob, _ = evaluate_locally(
        QueryPlan(rows=z.size, features=1, output=Output.PROBABILITY), z[:, None], np.ones(1)
    )
    bound = DEFAULT_MAX_ERROR + 2**-9 * np.abs(spline.slope_steps).max()
    assert np.abs(prob - 1 / (1 + np.exp(-z))).max() <= bound
    assert bound < 1e-3  # the workload's agreement target
