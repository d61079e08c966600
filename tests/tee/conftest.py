"""Shared fixtures for sealfl.tee tests: a simulated platform and the real quote vectors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from shared_files import shared_path

from sealfl.tee import Policy, SimulatedPlatform, SimulatedTee, measure_code


@dataclass(frozen=True)
class QuoteVector:
    """One real quote from ../shared/vectors with the time its README says to verify at."""

    quote: bytes
    quote_path: Path
    collateral_path: Path
    at: int


# Verification times from the vectors' README (the outdated TDX one: inside its stated window).
_VECTOR_TIMES = {
    "sgx_quote": 1752919277,
    "tdx_quote": 1752919234,
    "tdx_quote_outdated": 1772000000,
}


@pytest.fixture(scope="session")
def vectors() -> Path:
    return shared_path("vectors")


@pytest.fixture(scope="session")
def intel_root(vectors: Path) -> bytes:
    return (vectors / "IntelSGXRootCA.der").read_bytes()


def load_vector(vectors: Path, name: str) -> QuoteVector:
    return QuoteVector(
        quote=(vectors / name).read_bytes(),
        quote_path=vectors / name,
        collateral_path=vectors / f"{name}_collateral.json",
        at=_VECTOR_TIMES[name],
    )


@pytest.fixture(scope="session")
def sgx_vector(vectors: Path) -> QuoteVector:
    return load_vector(vectors, "sgx_quote")


@pytest.fixture(scope="session")
def tdx_vector(vectors: Path) -> QuoteVector:
    return load_vector(vectors, "tdx_quote")


@pytest.fixture(scope="session")
def tdx_outdated_vector(vectors: Path) -> QuoteVector:
    return load_vector(vectors, "tdx_quote_outdated")


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> SimulatedPlatform:
    return SimulatedPlatform.create(tmp_path_factory.mktemp("platform"))


@pytest.fixture(scope="session")
def tee(platform: SimulatedPlatform) -> SimulatedTee:
    return SimulatedTee(platform, measure_code({"role": "test"}))


@pytest.fixture(scope="session")
def simulated_policy(platform: SimulatedPlatform, tee: SimulatedTee) -> Policy:
    return Policy.for_simulated(
        measurements=[tee.measurement], platform_fingerprints=[platform.fingerprint]
    )
