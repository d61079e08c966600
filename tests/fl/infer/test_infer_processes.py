"""The three modes as separate processes: agreement, refusals, bad queries, a dead dealer."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sealfl.errors import AttestationError, ChannelError
from sealfl.fl.infer.client import (
    PREDICT,
    PREFETCH,
    STEP,
    InferenceClient,
    pinned_verifier,
    tee_verifier,
)
from sealfl.fl.infer.common import Mode
from sealfl.fl.infer.demo import connect
from sealfl.fl.infer.launch import launch_dealer, launch_server
from sealfl.fl.infer.protos import infer_pb2
from sealfl.models import sigmoid
from sealfl.mpc import Linear, Output, QueryPlan
from sealfl.mpc.protos import mpc_pb2
from sealfl.mpc.wire import describe_array, encode_frame, fill_message, header_to_proto
from sealfl.tee import SimulatedTee, create_ratls_certificate


def _client(fed: Any, mode: str) -> InferenceClient:
    return connect(
        Mode(mode),
        fed.servers[Mode(mode)],
        platform_fingerprint=fed.platform_fingerprint,
        measurement=fed.measurement,
        dealer=fed.dealer,
    )


def test_modes_agree_with_plaintext_on_breast_test_split(
    federation: Any, test_x: np.ndarray
) -> None:
    want = federation.model.predict_proba(test_x)
    labels = federation.model.predict(test_x)
    for mode in ("plaintext", "tee"):
        with _client(federation, mode) as client:
            got = client.query(test_x)
        assert got.probabilities is not None
        np.testing.assert_array_equal(got.probabilities, want)  # TEE: exactly plaintext
        np.testing.assert_array_equal(got.labels, labels)
    with _client(federation, "mpc") as client:
        prob = client.query(test_x, Output.PROBABILITY)
        logit = client.query(test_x, Output.LOGIT)
        label = client.query(test_x, Output.LABEL)
        beaver = client.query(test_x, Output.PROBABILITY, linear=Linear.BEAVER)
    assert prob.probabilities is not None and logit.probabilities is not None
    assert np.abs(prob.probabilities - want).max() <= 1e-3
    assert np.abs(logit.probabilities - want).max() <= 1e-4
    np.testing.assert_allclose(
        logit.probabilities, sigmoid(federation.model.logits(test_x)), atol=1e-4
    )
    assert beaver.probabilities is not None
    assert np.abs(beaver.probabilities - want).max() <= 1e-3
    assert beaver.bytes_received >= prob.bytes_received + test_x.size * 8  # server opens X - A too
    for result in (prob, logit, label, beaver):
        np.testing.assert_array_equal(result.labels, labels)
    assert logit.round_trips == 1 and prob.round_trips == 2


def _served(fed: Any, mode: str) -> tuple[int, int]:
    with _client(fed, mode) as client:
        info = client.describe()
    return int(info.queries_served), int(info.queries_refused)


def test_client_refusing_tee_evidence_sends_nothing(federation: Any, test_x: np.ndarray) -> None:
    before = _served(federation, "tee")
    wrong = tee_verifier(
        platform_fingerprint=federation.platform.fingerprint, measurement=bytes(32)
    )
    address = federation.servers[Mode.TEE].ready["address"]
    with pytest.raises(AttestationError, match="measurement"):
        InferenceClient.connect(address, mode=Mode.TEE, server_verifier=wrong)
    assert _served(federation, "tee") == before


class RecordingTlsListener:
    """A TLS endpoint that completes handshakes and keeps every application byte it receives."""

    def __init__(self, cert_pem: bytes, key_pem: bytes, workdir: Path) -> None:
        (workdir / "cert.pem").write_bytes(cert_pem)
        (workdir / "key.pem").write_bytes(key_pem)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(workdir / "cert.pem", workdir / "key.pem")
        self._context.set_alpn_protocols(["h2"])  # as a gRPC server: else gRPC sends nothing
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.address = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self.handshakes = 0
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._socket.accept()
            except TimeoutError:
                continue
            with raw:
                raw.settimeout(2.0)
                try:
                    with self._context.wrap_socket(raw, server_side=True) as tls:
                        self.handshakes += 1
                        while chunk := tls.recv(65536):
                            self.received += chunk
                except (OSError, ssl.SSLError):
                    continue  # the client hung up after reading the certificate

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()


def test_client_refusing_tee_evidence_sends_no_application_byte(
    federation: Any, tmp_path: Path
) -> None:
    # Genuine simulated evidence from the trusted platform, but for other code: the client
    # must refuse it after the TLS handshake and before writing anything.
    other_code = SimulatedTee(federation.platform, bytes(32))
    creds = create_ratls_certificate(other_code)
    listener = RecordingTlsListener(creds.cert_pem, creds.key_pem, tmp_path)
    expects = tee_verifier(
        platform_fingerprint=federation.platform.fingerprint, measurement=federation.measurement
    )
    try:
        with pytest.raises(AttestationError, match="measurement"):
            InferenceClient.connect(listener.address, mode=Mode.TEE, server_verifier=expects)
        time.sleep(0.3)  # let the listener read whatever might still be in flight
    finally:
        listener.close()
    assert listener.handshakes >= 1  # the client did reach it and read the certificate
    assert listener.received == b""


def test_tee_client_can_pin_the_model(federation: Any, test_x: np.ndarray) -> None:
    # The TEE server binds the hash of the model it unsealed into its evidence; a client that
    # knows which model it was promised checks it before sending anything.
    import hashlib

    address = federation.servers[Mode.TEE].ready["address"]
    promised = hashlib.sha256(federation.model.to_bytes()).digest()
    before = _served(federation, "tee")

    def verifier(model_sha256: bytes) -> Any:
        return tee_verifier(
            platform_fingerprint=federation.platform.fingerprint,
            measurement=federation.measurement,
            model_sha256=model_sha256,
        )

    with pytest.raises(AttestationError, match="claim 'model-sha256': expected 0000"):
        InferenceClient.connect(address, mode=Mode.TEE, server_verifier=verifier(bytes(32)))
    assert _served(federation, "tee") == before
    with InferenceClient.connect(
        address, mode=Mode.TEE, server_verifier=verifier(promised)
    ) as client:
        got = client.query(test_x[:3])
    assert got.probabilities is not None
    np.testing.assert_array_equal(got.probabilities, federation.model.predict_proba(test_x[:3]))


def test_client_refusing_an_unpinned_certificate(federation: Any) -> None:
    address = federation.servers[Mode.PLAINTEXT].ready["address"]
    with pytest.raises(AttestationError, match="not one of the 1 pinned"):
        InferenceClient.connect(
            address, mode=Mode.PLAINTEXT, server_verifier=pinned_verifier("00" * 32)
        )


def test_wrong_mode_is_a_clear_error(federation: Any) -> None:
    from sealfl.errors import ConfigError

    server = federation.servers[Mode.PLAINTEXT]
    with pytest.raises(ConfigError, match="serves mode 'plaintext', expected 'mpc'"):
        InferenceClient.connect(
            server.ready["address"],
            mode=Mode.MPC,
            server_verifier=pinned_verifier(server.ready["fingerprint"]),
            dealer_fingerprint=federation.dealer.ready["fingerprint"],
        )


def test_mpc_client_chooses_its_dealer(federation: Any) -> None:
    # The client's input is private only if the dealer does not collude with the server, so
    # the server's word for which dealer to use is not enough: the client pins it, or nothing.
    from sealfl.errors import ConfigError

    server = federation.servers[Mode.MPC]
    before = _served(federation, "mpc")
    verifier = pinned_verifier(server.ready["fingerprint"])
    with pytest.raises(ConfigError, match="needs the dealer's fingerprint"):
        InferenceClient.connect(server.ready["address"], mode=Mode.MPC, server_verifier=verifier)
    with pytest.raises(AttestationError, match="not one of the 1 pinned"):
        InferenceClient.connect(
            server.ready["address"],
            mode=Mode.MPC,
            server_verifier=verifier,
            dealer_fingerprint="00" * 32,
        )
    assert _served(federation, "mpc") == before


def test_malformed_plaintext_queries_are_refused_and_server_keeps_serving(
    federation: Any, test_x: np.ndarray
) -> None:
    with _client(federation, "plaintext") as client:

        def predict_raw(frame: bytes) -> Any:
            return client._server.call(PREDICT, frame, raw=True)

        wrong = infer_pb2.PredictRequest()
        wrong_shape = encode_frame(wrong, [describe_array(wrong.inputs, np.zeros((3, 29)))])
        with pytest.raises(ChannelError, match=r"INVALID_ARGUMENT.*\(rows, 30\), got \(3, 29\)"):
            predict_raw(wrong_shape)
        ok_frame = encode_frame(wrong, [describe_array(wrong.inputs, np.zeros((2, 30)))])
        with pytest.raises(ChannelError, match="needs 480 bytes, the frame has 17 left"):
            predict_raw(ok_frame[: len(ok_frame) - 480 + 17])
        bad = infer_pb2.PredictRequest(inputs=mpc_pb2.Array(dtype="object", shape=[1]))
        with pytest.raises(ChannelError, match="dtype 'object' not allowed"):
            predict_raw(encode_frame(bad, []))
        with pytest.raises(ChannelError, match="shorter than its length prefix"):
            predict_raw(b"\x01")
        ok = client.query(test_x[:5])
    assert ok.probabilities is not None
    np.testing.assert_array_equal(ok.probabilities, federation.model.predict_proba(test_x[:5]))


def test_malformed_mpc_query_is_refused_and_server_keeps_serving(
    federation: Any, test_x: np.ndarray
) -> None:
    with _client(federation, "mpc") as client:
        assert client._session is not None
        plan = QueryPlan(rows=4, features=29, output=Output.LOGIT)
        header = header_to_proto(plan, session_id=client._session.session_id, query_id="q")
        first = infer_pb2.StepRequest(header=header, message=mpc_pb2.Message())
        with pytest.raises(ChannelError, match="29 features, the model expects 30"):
            client._server.call(STEP, raw=True, request=encode_frame(first, []))
        orphan = infer_pb2.StepRequest(query_id="nope", message=mpc_pb2.Message())
        with pytest.raises(ChannelError, match="unknown MPC query 'nope'"):
            client._server.call(STEP, raw=True, request=encode_frame(orphan, []))
        with pytest.raises(ChannelError, match="not a valid StepRequest"):
            client._server.call(
                STEP, raw=True, request=(2).to_bytes(4, "little") + b"\xff\xff" + bytes(2)
            )
        _refuses_rows_sent_ahead_and_levels_sent_twice(client)
        ok = client.query(test_x[:5], Output.LOGIT)
    assert ok.probabilities is not None
    assert np.abs(ok.probabilities - federation.model.predict_proba(test_x[:5])).max() <= 1e-4


def _refuses_rows_sent_ahead_and_levels_sent_twice(client: InferenceClient) -> None:
    """Prefetch may carry only the openings that need no rows, and the first Step not again."""
    assert client._session is not None and client._dealer is not None
    plan = QueryPlan(rows=2, features=30, output=Output.PROBABILITY)
    header = header_to_proto(plan, session_id=client._session.session_id, query_id="")
    seed = client._dealer.call("Prepare", infer_pb2.PrepareRequest(header=header))
    header.query_id = seed.query_id

    def framed(request: Any, message: dict[int, list[np.ndarray]]) -> bytes:
        return encode_frame(request, fill_message(request.message, message))

    rows = {0: [np.zeros((2, 30), np.uint64)]}
    early = {1: [np.zeros(2, np.uint64)]}
    with pytest.raises(ChannelError, match=r"level 0 .* cannot be sent ahead"):
        client._server.call(
            PREFETCH, raw=True, request=framed(infer_pb2.PrefetchRequest(header=header), rows)
        )
    client._server.call(
        PREFETCH, raw=True, request=framed(infer_pb2.PrefetchRequest(header=header), early)
    )
    step = infer_pb2.StepRequest(header=header, query_id=header.query_id)
    with pytest.raises(ChannelError, match="repeats a level sent with the prefetch"):
        client._server.call(STEP, raw=True, request=framed(step, {**rows, **early}))


def test_dealer_that_disappears_fails_the_query_quickly(
    federation: Any, test_x: np.ndarray
) -> None:
    dealer = launch_dealer(federation.workdir)
    server = launch_server(
        "mpc", model=federation.model_path, log_dir=federation.workdir, dealer=dealer
    )
    try:
        with connect(Mode.MPC, server, dealer=dealer) as client:
            client.query(test_x[:3], Output.LABEL)  # works while the dealer lives
            # Prepared at the dealer, which then vanishes before the server fetches its part.
            assert client._dealer is not None
            plan = QueryPlan(rows=3, features=30, output=Output.LOGIT)
            assert client._session is not None
            header = header_to_proto(plan, session_id=client._session.session_id, query_id="")
            seed = client._dealer.call("Prepare", infer_pb2.PrepareRequest(header=header))
            header.query_id = seed.query_id
            dealer.stop()
            started = time.monotonic()
            with pytest.raises(ChannelError, match="material from the dealer"):
                client._server.call(
                    PREFETCH,
                    raw=True,
                    request=encode_frame(infer_pb2.PrefetchRequest(header=header), []),
                )
            with pytest.raises(ChannelError, match="Prepare"):
                client.query(test_x[:3], Output.PROBABILITY)
            assert time.monotonic() - started < 30
            # The server itself keeps serving Describe.
            assert client.describe().mode == "mpc"
    finally:
        server.stop()
        dealer.stop()
