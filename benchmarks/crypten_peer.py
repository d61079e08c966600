"""CrypTen's two-party inference of the same model: the peer of ``sealfl bench infer``.

Run by an interpreter that has CrypTen and torch installed, not by sealfl's environment (CrypTen
pins old dependencies): ``sealfl bench infer --crypten-python /path/to/python`` runs it after its
own measurements, in the same invocation, and reports the ratios. By hand::

    /path/to/python benchmarks/crypten_peer.py --features 528 --batch-sizes 1,1000 --repeats 7

It prints one JSON object per batch size: ``batch``, ``online_ms`` (median), ``online_ms_min``
and ``max_abs_diff`` (of the probabilities from the plaintext model).

What is timed matches sealfl's online latency: the client's rows are secret-shared (party 0's
input), multiplied by the server's shared weights, passed through CrypTen's sigmoid, and the
result revealed to the client only. CrypTen has no separate offline phase: its default
trusted-first-party provider makes the Beaver triples inside the timed region. Its two parties
are processes on this machine (``crypten.mpc.run_multiprocess``), one torch thread each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import types
import warnings


def _import_crypten():  # type: ignore[no-untyped-def]
    """Import CrypTen, bridging the one torch internal that CrypTen 0.4.1 expects.

    CrypTen 0.4.1 imports ``torch.onnx._internal.registration`` (for its ONNX model converter,
    unused here); torch releases from 2.5 on no longer have it. A stand-in module lets the
    import succeed; nothing used in this benchmark touches it.
    """
    import torch

    try:
        import torch.onnx._internal.registration
    except ImportError:
        stub = types.ModuleType("torch.onnx._internal.registration")
        stub.registry = None  # type: ignore[attr-defined]
        sys.modules["torch.onnx._internal.registration"] = stub
    warnings.filterwarnings("ignore")
    import crypten

    return torch, crypten


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=528)
    parser.add_argument("--batch-sizes", default="1,10,100,1000")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch, crypten = _import_crypten()
    import crypten.communicator as comm
    import crypten.mpc as mpc

    crypten.init()
    torch.set_num_threads(1)
    batches = [int(b) for b in args.batch_sizes.split(",") if b.strip()]

    @mpc.run_multiprocess(world_size=2)  # type: ignore[misc]
    def run() -> None:
        torch.manual_seed(0)
        w = torch.randn(args.features, 1) / args.features**0.5
        w_enc = crypten.cryptensor(w, src=1)  # the server's weights, shared once
        for batch in batches:
            x = torch.randn(batch, args.features)
            times = []
            out = None
            for _ in range(args.repeats + 1):  # the first is a warm-up
                comm.get().barrier()
                start = time.perf_counter()
                x_enc = crypten.cryptensor(x, src=0)  # the client's rows
                out = x_enc.matmul(w_enc).sigmoid().get_plain_text(dst=0)
                comm.get().barrier()
                times.append(time.perf_counter() - start)
            if comm.get().get_rank() == 0:
                diff = float((out - torch.sigmoid(x @ w)).abs().max())
                row = {
                    "batch": batch,
                    "online_ms": 1000 * statistics.median(times[1:]),
                    "online_ms_min": 1000 * min(times[1:]),
                    "max_abs_diff": diff,
                }
                print(json.dumps(row), flush=True)

    run()


if __name__ == "__main__":
    main()
