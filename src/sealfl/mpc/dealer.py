"""The dealer's correlated randomness, and how each party expands its part.

The dealer is a third party that never sees an input, a weight or an output; it only hands out
random values with a known relation between them. Per session it draws a mask ``B`` for the
server's model (the server publishes ``F = w - B`` once). Per query it draws two seeds and sends
the client only its 32-byte seed, and the server its own seed plus *corrections*: the arrays
that make the two parties' random values add up to the required relations:

- linear layer: the client's mask ``A`` (rows x features) and share ``Z0``; the server's
  ``Z1 = A @ B - Z0``, so that ``A @ F + Z0`` and ``(X - A) @ w + Z1`` add up to ``X @ w``
  (Beaver variant: both parties draw shares of ``A`` and ``B``, and ``Z1`` completes
  ``Z0 + Z1 = A @ B``);
- comparisons: AND triples per round, ``c_1 = (a_0 ^ a_1) & (b_0 ^ b_1) ^ c_0``;
- probability output: a mask ``rho`` for the logit, and per comparison a random bit ``beta``
  given both as XOR shares and as additive shares, with additive shares of ``beta * rho``.

Everything a party receives is uniform on its own, so each party learns nothing from it; the
client and the server must not both collude with the dealer (see :mod:`sealfl.mpc`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sealfl.errors import ProtocolError
from sealfl.mpc.binary import AndTriple, Words
from sealfl.mpc.plan import Linear, Output, QueryPlan
from sealfl.mpc.prg import Prg, fresh_seed

U64 = npt.NDArray[np.uint64]
Arr = npt.NDArray[Any]


@dataclass(frozen=True)
class PartyMaterial:
    """One party's correlated randomness for one query, after expansion.

    Attributes
    ----------
    mask
        Share of the input mask ``A`` (rows x features): all of it at the client, ``None`` at
        the server in the input-owner variant.
    weight_mask
        Share of the weight mask ``B`` (Beaver variant only; per session otherwise).
    logit
        Share of ``A @ B`` (``Z0`` or ``Z1``).
    rho
        Share of the logit mask (probability output only).
    triples
        AND triples, one per comparison round.
    beta_xor, beta_add, beta_rho
        XOR share of the random bits ``beta`` (uint8), additive shares of ``beta`` and of
        ``beta * rho`` (probability output only).
    """

    mask: U64 | None
    weight_mask: U64 | None
    logit: U64
    rho: U64 | None
    triples: tuple[AndTriple, ...]
    beta_xor: npt.NDArray[np.uint8] | None
    beta_add: U64 | None
    beta_rho: U64 | None


@dataclass(frozen=True)
class ServerDeal:
    """What the dealer sends the server for one query: a seed and the corrections.

    Attributes
    ----------
    seed
        The server's 32-byte seed.
    logit
        ``Z1 = A @ B - Z0``.
    and_c
        The server's triple shares ``c`` per round and right operand, flattened in order.
    beta_add, beta_rho
        The server's additive shares of ``beta`` and ``beta * rho`` (empty unless probability).
    """

    seed: bytes
    logit: U64
    and_c: tuple[Words, ...]
    beta_add: U64 | None
    beta_rho: U64 | None


def session_mask(features: int) -> U64:
    """Draw the mask ``B`` of a session's model (fresh for every session)."""
    return Prg(fresh_seed()).words("B", (features,))


def _shares(prg: Prg, plan: QueryPlan, *, client: bool) -> dict[str, Arr]:
    """Expand every value a party draws from its own seed."""
    n, k = plan.rows, plan.columns
    out: dict[str, Arr] = {}
    beaver = plan.linear is Linear.BEAVER
    if client or beaver:
        out["mask"] = prg.words("A", (n, plan.features))
    if beaver:
        out["weight_mask"] = prg.words("B", (plan.features,))
    if client:
        out["logit"] = prg.words("Z", (n,))
    cmp = plan.compare
    if cmp is not None:
        for r in range(cmp.rounds):
            shape = cmp.gate_shape(r, n)
            out[f"a{r}"] = prg.words(f"and.{r}.a", shape)
            for j in range(cmp.rights(r)):
                out[f"b{r}.{j}"] = prg.words(f"and.{r}.b.{j}", shape)
                if client:
                    out[f"c{r}.{j}"] = prg.words(f"and.{r}.c.{j}", shape)
    if plan.output is Output.PROBABILITY:
        out["rho"] = prg.words("rho", (n,))
        out["beta_xor"] = prg.bits("beta.xor", (n, k))
        if client:
            out["beta_add"] = prg.words("beta.add", (n, k))
            out["beta_rho"] = prg.words("beta.rho", (n, k))
    return out


def deal_query(plan: QueryPlan, session_b: U64) -> tuple[bytes, ServerDeal]:
    """Draw one query's correlated randomness.

    ``session_b`` is the session's weight mask, used by the input-owner variant; the Beaver
    variant draws a fresh triple instead.

    Returns
    -------
    tuple
        The client's seed and the server's deal.
    """
    if session_b.shape != (plan.features,):
        raise ProtocolError(
            f"dealer: session mask has {session_b.shape[0]} features, query asks for "
            f"{plan.features}"
        )
    seed_c, seed_s = fresh_seed(), fresh_seed()
    c = _shares(Prg(seed_c), plan, client=True)
    s = _shares(Prg(seed_s), plan, client=False)
    if plan.linear is Linear.BEAVER:
        z1 = (c["mask"] + s["mask"]) @ (c["weight_mask"] + s["weight_mask"]) - c["logit"]
    else:
        z1 = c["mask"] @ session_b - c["logit"]
    and_c: list[Words] = []
    cmp = plan.compare
    if cmp is not None:
        for r in range(cmp.rounds):
            a = c[f"a{r}"] ^ s[f"a{r}"]
            for j in range(cmp.rights(r)):
                b = c[f"b{r}.{j}"] ^ s[f"b{r}.{j}"]
                and_c.append(np.asarray((a & b) ^ c[f"c{r}.{j}"], dtype=np.uint64))
    beta_add = beta_rho = None
    if plan.output is Output.PROBABILITY:
        beta = (c["beta_xor"] ^ s["beta_xor"]).astype(np.uint64)
        rho = c["rho"] + s["rho"]
        beta_add = beta - c["beta_add"]
        beta_rho = beta * rho[:, None] - c["beta_rho"]
    deal = ServerDeal(
        seed=seed_s, logit=z1, and_c=tuple(and_c), beta_add=beta_add, beta_rho=beta_rho
    )
    return seed_c, deal


def _triples(plan: QueryPlan, drawn: dict[str, Arr], cs: list[Words]) -> tuple[AndTriple, ...]:
    cmp = plan.compare
    if cmp is None:
        return ()
    out, i = [], 0
    for r in range(cmp.rounds):
        bs, cs_r = [], []
        for j in range(cmp.rights(r)):
            bs.append(drawn[f"b{r}.{j}"])
            cs_r.append(cs[i])
            i += 1
        out.append(AndTriple(a=drawn[f"a{r}"], b=tuple(bs), c=tuple(cs_r)))
    return tuple(out)


def expand_client(plan: QueryPlan, seed: bytes) -> PartyMaterial:
    """Expand the client's seed into its material for ``plan``."""
    d = _shares(Prg(seed), plan, client=True)
    cmp = plan.compare
    cs: list[Words] = []
    if cmp is not None:
        cs = [d[f"c{r}.{j}"] for r in range(cmp.rounds) for j in range(cmp.rights(r))]
    return PartyMaterial(
        mask=d["mask"],
        weight_mask=d.get("weight_mask"),
        logit=d["logit"],
        rho=d.get("rho"),
        triples=_triples(plan, d, cs),
        beta_xor=d.get("beta_xor"),
        beta_add=d.get("beta_add"),
        beta_rho=d.get("beta_rho"),
    )


def expand_server(plan: QueryPlan, deal: ServerDeal) -> PartyMaterial:
    """Expand the server's seed and attach the dealer's corrections, checking their shapes."""
    n, k = plan.rows, plan.columns
    _check("logit", deal.logit, (n,), np.uint64)
    cmp = plan.compare
    expected_c = 0 if cmp is None else sum(cmp.rights(r) for r in range(cmp.rounds))
    if len(deal.and_c) != expected_c:
        raise ProtocolError(
            f"dealer material: expected {expected_c} triple arrays, got {len(deal.and_c)}"
        )
    if cmp is not None:
        shapes = [cmp.gate_shape(r, n) for r in range(cmp.rounds) for _ in range(cmp.rights(r))]
        for i, (arr, shape) in enumerate(zip(deal.and_c, shapes, strict=True)):
            _check(f"and_c[{i}]", arr, shape, np.uint64)
    if plan.output is Output.PROBABILITY:
        _check("beta_add", deal.beta_add, (n, k), np.uint64)
        _check("beta_rho", deal.beta_rho, (n, k), np.uint64)
    d = _shares(Prg(deal.seed), plan, client=False)
    return PartyMaterial(
        mask=d.get("mask"),
        weight_mask=d.get("weight_mask"),
        logit=deal.logit,
        rho=d.get("rho"),
        triples=_triples(plan, d, list(deal.and_c)),
        beta_xor=d.get("beta_xor"),
        beta_add=deal.beta_add,
        beta_rho=deal.beta_rho,
    )


def _check(name: str, arr: object, shape: tuple[int, ...], dtype: type) -> None:
    if not isinstance(arr, np.ndarray):
        raise ProtocolError(f"dealer material: {name} missing, expected an array {shape}")
    if arr.shape != shape or arr.dtype != np.dtype(dtype):
        raise ProtocolError(
            f"dealer material: {name} expected {np.dtype(dtype).name}{list(shape)}, "
            f"got {arr.dtype.name}{list(arr.shape)}"
        )
