"""openmined-psi 2.0.6 on the same sets: the peer of ``sealfl bench psi``.

Run by an interpreter that has openmined-psi installed, not by sealfl's environment (it pins
protobuf 6, sealfl protobuf 7): ``sealfl bench psi --openmined-python /path/to/python`` runs it
after its own measurement, in the same invocation, and reports the ratios. By hand::

    /work/openmined-venv/bin/python benchmarks/openmined_peer.py --n 1000000 --overlap 500000

The sets are sealfl's benchmark sets (ids ``user-%012d``: the leader ``0..n-1``, the follower
shifted so that ``overlap`` ids are shared). openmined-psi is a request/response protocol
(ECDH on P-256 from Google's private-join-and-compute): the *server* (here the follower) sends a
setup message with its masked set in a Golomb-compressed set, the *client* (the leader) sends
its masked set and gets it back masked again, and learns the intersection. Both roles run in
this one process, one after the other, each call timed in CPU seconds and assigned to its role,
so the figures are CPU per party as for sealfl. ``fpr`` is openmined's false-positive bound for
the whole query (sealfl's is 2^-64 for the whole session).

It prints one JSON object: the CPU seconds of each role, the three messages' sizes, the
intersection size and the peak memory of this process.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--overlap", type=int, default=None)
    parser.add_argument("--fpr", type=float, default=1e-9)
    args = parser.parse_args()
    import private_set_intersection.python as psi

    n = args.n
    overlap = n // 2 if args.overlap is None else args.overlap
    leader = [f"user-{i:012d}" for i in range(n)]
    follower = [f"user-{i:012d}" for i in range(n - overlap, 2 * n - overlap)]
    cpu = {"server": 0.0, "client": 0.0}

    def timed(role: str, call, *call_args):  # type: ignore[no-untyped-def]
        started = time.process_time()
        out = call(*call_args)
        cpu[role] += time.process_time() - started
        return out

    wall = time.perf_counter()
    server = timed("server", psi.server.CreateWithNewKey, True)
    client = timed("client", psi.client.CreateWithNewKey, True)
    setup = timed(
        "server", server.CreateSetupMessage, args.fpr, len(leader), follower, psi.DataStructure.GCS
    )
    request = timed("client", client.CreateRequest, leader)
    response = timed("server", server.ProcessRequest, request)
    found = timed("client", client.GetIntersection, setup, response)
    wall = time.perf_counter() - wall
    print(
        json.dumps(
            {
                "n": n,
                "overlap": overlap,
                "fpr": args.fpr,
                "server_cpu_s": cpu["server"],
                "client_cpu_s": cpu["client"],
                "wall_s": wall,
                "setup_bytes": len(setup.SerializeToString()),
                "request_bytes": len(request.SerializeToString()),
                "response_bytes": len(response.SerializeToString()),
                "intersection": len(found),
                "peak_rss_mb": _peak_rss_mb(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
