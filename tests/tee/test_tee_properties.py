"""Property tests: claims survive a round trip; arbitrary bytes raise only AttestationError."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealfl.errors import AttestationError
from sealfl.tee import Policy, SimulatedTee, Verifier, create_ratls_certificate
from sealfl.tee import verify_ratls_certificate as verify
from sealfl.tee.dice import decode_claims, decode_tagged_evidence
from sealfl.tee.ratls import read_certificate_evidence
from sealfl.tee.simulated import SIMULATED_MARKER, verify_simulated_quote

T0 = datetime(2026, 1, 1, tzinfo=UTC)
claim_names = st.text(min_size=1, max_size=20).filter(lambda n: n not in {"pubkey-hash", "iat"})
FUZZ = settings(max_examples=200, deadline=None)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(claims=st.dictionaries(claim_names, st.binary(max_size=64), max_size=4))
def test_claims_round_trip(tee: SimulatedTee, simulated_policy: Policy, claims) -> None:
    creds = create_ratls_certificate(tee, claims=claims, now=T0)
    assert verify(creds.cert_pem, Verifier(simulated_policy), now=T0).claims == claims


def raises_only_attestation_error(function, data: bytes) -> None:
    with contextlib.suppress(AttestationError):
        function(data)


@FUZZ
@given(st.binary(max_size=600))
def test_simulated_quote_parser(data: bytes) -> None:
    raises_only_attestation_error(verify_simulated_quote, SIMULATED_MARKER + data)


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.one_of(st.integers(), st.binary(max_size=8), st.text(max_size=8), st.none()),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=4), inner, max_size=3)
                | st.builds(cbor2.CBORTag, st.sampled_from([60000, 1, 24]), inner)
            ),
            max_leaves=8,
        ).map(cbor2.dumps),
    )
)
def test_evidence_and_claims_decoders(data: bytes) -> None:
    raises_only_attestation_error(decode_tagged_evidence, data)
    raises_only_attestation_error(decode_claims, data)


@FUZZ
@given(st.binary(max_size=400))
def test_certificate_reader(data: bytes) -> None:
    pem = b"-----BEGIN CERTIFICATE-----\n" + data + b"\n-----END CERTIFICATE-----\n"
    raises_only_attestation_error(read_certificate_evidence, pem)
    raises_only_attestation_error(read_certificate_evidence, data)
