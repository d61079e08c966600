"""Private inference of a logistic-regression model: plaintext, TEE or MPC.

A *client* (an applicant) holds feature rows; a *server* (a lender) holds a bias-free
logistic-regression model (:mod:`sealfl.models`). Neither should see the other's part. Three
modes serve the same model behind one API (:class:`~sealfl.fl.infer.client.InferenceClient`)
and one command (``sealfl infer``), each party a separate process talking gRPC over TLS:

- ``plaintext``: the server computes on the rows. TLS with a pinned self-signed certificate.
  The baseline: it hides the data from the network only.
- ``tee``: the same computation inside a (here simulated) TEE. The client checks the server's
  RA-TLS evidence against its policy (measurement and platform) *before sending anything*; the
  model is unsealed inside the enclave from a file sealed to its identity, and its hash is bound
  in the certificate's claims. Trust moves to the TEE vendor and the measured code.
- ``mpc``: two-party computation with a dealer (:mod:`sealfl.mpc`; read its trust assumptions:
  semi-honest parties, a dealer that colludes with neither, and what a client learns from its
  outputs). The server never sees the rows, the client never sees the weights. Outputs: the
  probability with the sigmoid inside MPC, the logit revealed to the client, or the label only.

In every mode the server chooses the outputs it serves (``--allow-outputs``, the label alone by
default: a probability or a logit query of as many rows as the model has features returns the
model, docs/trust.md) and may give each client certificate a row budget; sessions and queries
are bounded per client (:mod:`.quota`). Plaintext and MPC servers and the dealer can keep their
identity in a key file (:mod:`.keyfile`) so that clients' pins survive a restart; clients and
the server connect again to a restarted peer, and a client opens a new session when told its
own is unknown.

Modules: :mod:`.server` (the model server), :mod:`.dealer` (the dealer service), :mod:`.client`,
:mod:`.quota` (per-client bounds), :mod:`.keyfile` (persistent identities), :mod:`.run` (start
servers), :mod:`.launch` (separate processes), :mod:`.demo`.

Phases of an MPC query: *offline* (not needing the rows) — the client asks the dealer to prepare
the query and gets a 32-byte seed, expands it and computes its first comparison round, which it
sends with ``Prefetch``; the server fetches its part from the dealer and precomputes what it can;
*online* — the masked rows, then one call per client message (``Step``): two round trips with
the sigmoid inside MPC, one for the revealed logit.
A dealer that is gone makes the query fail within the dealer deadline with a message naming it.
"""
