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
- comparisons: per round of gates, masks for the opened planes and the server's shares of
  the mask products (:mod:`sealfl.mpc.binary`), e.g. ``c_1 = (a_0 ^ a_1) & (b_0 ^ b_1) ^ c_0``;
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
from sealfl.mpc.binary import CarryGate, GateMaterial, Words
from sealfl.mpc.plan import Linear, Output, QueryPlan
from sealfl.mpc.prg import Prg, fresh_seed
from sealfl.mpc.ring import check_array

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
    gates
        Gate material, one per comparison round.
    beta_xor, beta_add, beta_rho
        XOR share of the random bits ``beta`` (uint8), additive shares of ``beta`` and of
        ``beta * rho`` (probability output only).
    """

    mask: U64 | None
    weight_mask: U64 | None
    logit: U64
    rho: U64 | None
    gates: tuple[GateMaterial, ...]
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
    products
        The server's shares of each comparison round's mask products.
    beta_add, beta_rho
        The server's additive shares of ``beta`` and ``beta * rho`` (empty unless probability).
    """

    seed: bytes
    logit: U64
    products: tuple[Words, ...]
    beta_add: U64 | None
    beta_rho: U64 | None


def session_mask(features: int, seed: bytes | None = None) -> U64:
    """Draw the mask ``B`` of a session's model (fresh for every session).

    ``seed`` (32 bytes) makes it reproducible: a dealer that derives each session's seed from
    its own secret keeps no state per session and still knows every session's mask.
    """
    return Prg(fresh_seed() if seed is None else seed).words("B", (features,))


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
        party = 0 if client else 1
        for r in range(cmp.rounds):
            out[f"mask{r}"] = prg.words(f"cmp.{r}.mask", cmp.mask_shape(r, party, n))
            if client:
                out[f"prod{r}"] = prg.words(f"cmp.{r}.prod", cmp.product_shape(r, n))
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
    products: list[Words] = []
    cmp = plan.compare
    if cmp is not None:
        for r in range(cmp.rounds):
            gate = cmp.gate(r)
            products.append(gate.correction(c[f"mask{r}"], s[f"mask{r}"], c[f"prod{r}"]))
    beta_add = beta_rho = None
    if plan.output is Output.PROBABILITY:
        beta = (c["beta_xor"] ^ s["beta_xor"]).astype(np.uint64)
        rho = c["rho"] + s["rho"]
        beta_add = beta - c["beta_add"]
        beta_rho = beta * rho[:, None] - c["beta_rho"]
    deal = ServerDeal(
        seed=seed_s, logit=z1, products=tuple(products), beta_add=beta_add, beta_rho=beta_rho
    )
    return seed_c, deal


def _gates(
    plan: QueryPlan, drawn: dict[str, Arr], products: list[Words], party: int
) -> tuple[GateMaterial, ...]:
    cmp = plan.compare
    out = []
    for r in range(0 if cmp is None else cmp.rounds):
        gate = cmp.gate(r)  # type: ignore[union-attr]
        if isinstance(gate, CarryGate):
            out.append(gate.material(party, drawn[f"mask{r}"], products[r]))
        else:
            out.append(GateMaterial(masks=drawn[f"mask{r}"], products=products[r]))
    return tuple(out)


def expand_client(plan: QueryPlan, seed: bytes) -> PartyMaterial:
    """Expand the client's seed into its material for ``plan``."""
    d = _shares(Prg(seed), plan, client=True)
    cmp = plan.compare
    products = [] if cmp is None else [d[f"prod{r}"] for r in range(cmp.rounds)]
    return PartyMaterial(
        mask=d["mask"],
        weight_mask=d.get("weight_mask"),
        logit=d["logit"],
        rho=d.get("rho"),
        gates=_gates(plan, d, products, party=0),
        beta_xor=d.get("beta_xor"),
        beta_add=d.get("beta_add"),
        beta_rho=d.get("beta_rho"),
    )


def expand_server(plan: QueryPlan, deal: ServerDeal) -> PartyMaterial:
    """Expand the server's seed and attach the dealer's corrections, checking their shapes."""
    n, k = plan.rows, plan.columns
    check_array(deal.logit, (n,), np.uint64, what="dealer material: logit")
    cmp = plan.compare
    rounds = 0 if cmp is None else cmp.rounds
    if len(deal.products) != rounds:
        raise ProtocolError(
            f"dealer material: expected {rounds} gate product arrays, got {len(deal.products)}"
        )
    if cmp is not None:
        for r, arr in enumerate(deal.products):
            shape = cmp.product_shape(r, n)
            check_array(arr, shape, np.uint64, what=f"dealer material: products[{r}]")
    if plan.output is Output.PROBABILITY:
        check_array(deal.beta_add, (n, k), np.uint64, what="dealer material: beta_add")
        check_array(deal.beta_rho, (n, k), np.uint64, what="dealer material: beta_rho")
    d = _shares(Prg(deal.seed), plan, client=False)
    return PartyMaterial(
        mask=d.get("mask"),
        weight_mask=d.get("weight_mask"),
        logit=deal.logit,
        rho=d.get("rho"),
        gates=_gates(plan, d, list(deal.products), party=1),
        beta_xor=d.get("beta_xor"),
        beta_add=deal.beta_add,
        beta_rho=deal.beta_rho,
    )
