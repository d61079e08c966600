"""Secure two-party computation over Z_2^64 with a dealer of correlated randomness.

Built for private inference of a bias-free logistic-regression model: a *client* holds the
inputs ``X`` and receives the output, a *server* holds the weights ``w``, and a *dealer* hands
out correlated randomness before each query (:mod:`sealfl.mpc.dealer`). Values are fixed-point
numbers in the ring Z_2^64 (:mod:`sealfl.mpc.ring`), additively shared between client and server.

Protocol (:mod:`sealfl.mpc.parties`, schedule in :mod:`sealfl.mpc.plan`):

1. Linear layer, input-owner variant of Beaver's multiplication. Per session the server
   publishes its model masked once, ``F = w - B``. Per query the client sends ``E = X - A``
   (``A`` its dealer mask) and keeps ``A @ F + Z0``; the server computes ``E @ w + Z1``.
   The two add up to ``X @ w`` and the bytes sent equal those of the plaintext input. The
   general path, for operands that are both secret-shared, is a plain Beaver triple per query
   (:class:`~sealfl.mpc.plan.Linear`), at twice the traffic.
2. Output, one of: the server reveals its logit share to the client (``logit``); an exact
   secure comparison ``logit >= 0`` (``label``, :mod:`sealfl.mpc.compare`); or the sigmoid
   inside MPC as a continuous piecewise-linear spline (``probability``,
   :mod:`sealfl.mpc.spline`): secure comparisons with every knot, then the selected slope and
   intercept are applied with the dealer's random bits, and only the client gets the result.

Trust assumptions (read before deploying):

- **Semi-honest parties.** Client and server follow the protocol; they may try to learn from
  what they see. A malicious party can make the result wrong (nothing is authenticated with
  MACs); it cannot, by deviating, make the other party send more than the protocol sends.
- **Non-colluding dealer.** The dealer knows every mask. If it colludes with the server, the
  client's input is exposed; with the client, the model is. Run it under a third
  organisation, or in an attested TEE, and let the client pin it (``sealfl.fl.infer``
  requires this): a dealer named by the server may be the server's own.
- **What the server learns:** the shape of the batch and the output kind; every array it sees
  is masked by fresh uniform randomness. **What the client learns:** its output. A
  probability or a logit is one linear equation in ``w`` per row, so ``features`` well-chosen
  queries reveal the model (a model-extraction attack that no protocol prevents, since it
  uses only the legitimate output): one logit query of the unit rows returns the weights to
  5e-7, and so does a probability query, since the spline is public and invertible between
  its knots. ``label`` output leaks one bit per row: the direction of ``w`` (never its scale)
  by bisection, about 30 rows per feature. A server limits this with the outputs it serves
  and a row budget per client (:mod:`sealfl.fl.infer`; figures in docs/trust.md).
- **Accuracy.** The logit is exact up to fixed-point rounding (about 1e-6); the spline is within
  7e-4 of the sigmoid; comparisons with knots are made on the logit rounded to 2^-10, which,
  because the spline is continuous, adds at most about 6e-5: every probability is within
  8e-4 of the sigmoid. Logits must stay within 2^20 in
  magnitude (:data:`~sealfl.mpc.plan.MAX_LOGIT`, far beyond where the sigmoid saturates);
  beyond about 2^21 the probability output is silently wrong, and no party can check.
"""

from sealfl.mpc.dealer import PartyMaterial as PartyMaterial
from sealfl.mpc.dealer import ServerDeal as ServerDeal
from sealfl.mpc.dealer import deal_query as deal_query
from sealfl.mpc.dealer import expand_client as expand_client
from sealfl.mpc.dealer import expand_server as expand_server
from sealfl.mpc.dealer import session_mask as session_mask
from sealfl.mpc.parties import ClientParty as ClientParty
from sealfl.mpc.parties import Endpoint as Endpoint
from sealfl.mpc.parties import Message as Message
from sealfl.mpc.parties import ServerParty as ServerParty
from sealfl.mpc.parties import evaluate_locally as evaluate_locally
from sealfl.mpc.plan import Linear as Linear
from sealfl.mpc.plan import Output as Output
from sealfl.mpc.plan import QueryPlan as QueryPlan
from sealfl.mpc.ring import FRAC_BITS as FRAC_BITS
from sealfl.mpc.ring import decode as decode
from sealfl.mpc.ring import encode as encode

__all__ = [
    "FRAC_BITS",
    "ClientParty",
    "Endpoint",
    "Linear",
    "Message",
    "Output",
    "PartyMaterial",
    "QueryPlan",
    "ServerDeal",
    "ServerParty",
    "deal_query",
    "decode",
    "encode",
    "evaluate_locally",
    "expand_client",
    "expand_server",
    "session_mask",
]
