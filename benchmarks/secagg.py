"""Secure-aggregation benchmark: masking cost per worker and bytes against the fp32 upload.

For a vector of ResNet-20's size (269,722 floats) and ResNet-56's (853,018), one worker's cost
of stage 3 (quantise + self-mask + one pairwise mask per neighbour: X25519, HKDF, AES-256-CTR
expansion, uint32 adds) with 2 and 5 neighbours, the median of ``--repeat`` runs on one thread,
and the masked upload's bytes over the fp32 model's (framing: a 44-byte round tag and a 4-byte
sender id). The aggregator's unmasking cost for one dropout is in the last column.

Goals (issue 14): masking under 10% of a ResNet-20 local epoch per worker (about 125 s here on
25k images, ``docs/secure-aggregation.md``), so under 12.5 s; upload at most 1.1x fp32. Flower's
SecAgg+ measured 29-35 ms (ResNet-20) and 61-96 ms (ResNet-56) per client for 1-4 neighbours
with int64 uploads, 2.0x (``hfl-anchors.md`` section 5).

Run with ``python benchmarks/secagg.py`` (``--repeat 3`` for a quick look).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from sealfl.secagg import Params, RoundTag, SecAggAggregator, SecAggWorker

MODELS = {"resnet20": 269_722, "resnet56": 853_018}
FRAMING = 44 + 4
LOCAL_EPOCH_S = 125.0  # ResNet-20, 25k images, 1 thread (hfl-anchors.md section 4.2)


def _setup(
    numel: int, neighbours: int
) -> tuple[dict[int, SecAggWorker], SecAggAggregator, RoundTag]:
    ids = tuple(range(1, neighbours + 2))
    params = Params(workers=ids, threshold=(neighbours + 1) // 2 + 1, numel=numel, clip=4.0)
    tag = RoundTag(os.urandom(32), 0, 0)
    workers = {w: SecAggWorker(worker_id=w, params=params) for w in ids}
    agg = SecAggAggregator(params=params, tag=tag)
    for w in ids:
        agg.receive_advert(workers[w].advertise(tag))
    roster = agg.roster()
    for w in ids:
        agg.receive_shares(workers[w].share_keys(tag, roster))
    agg.close_sharing()
    return workers, agg, tag


def measure(numel: int, neighbours: int, repeat: int) -> dict[str, float]:
    """Median masking time of worker 1, and the aggregator's unmask with one dropout."""
    rng = np.random.default_rng(0)
    values = rng.normal(0, 0.05, numel).astype(np.float32)
    times, unmask = [], []
    for _ in range(repeat):
        workers, agg, tag = _setup(numel, neighbours)
        delivery = agg.delivery(1)
        start = time.perf_counter()
        masked = workers[1].masked_input(tag, delivery, values)
        times.append(time.perf_counter() - start)
        agg.receive_masked(masked)
        for w in list(workers)[1:-1]:
            agg.receive_masked(workers[w].masked_input(tag, agg.delivery(w), values))
        request = agg.unmask_request()
        for w in sorted(request.survivors):
            agg.receive_unmask(workers[w].unmask(request))
        start = time.perf_counter()
        agg.finish()
        unmask.append(time.perf_counter() - start)
    upload = masked.values.nbytes + FRAMING
    return {
        "mask_ms": 1e3 * statistics.median(times),
        "unmask_ms": 1e3 * statistics.median(unmask),
        "bytes_ratio": upload / (4 * numel),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        "| model | floats | neighbours | mask ms/worker | % of ResNet-20 epoch | "
        "bytes / fp32 | agg unmask ms (1 dropout) | Flower SecAgg+ (anchor) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    anchors = {"resnet20": "29-35 ms, 2.0x", "resnet56": "61-96 ms, 2.0x"}
    for name, numel in MODELS.items():
        for k in (2, 5):
            m = measure(numel, k, args.repeat)
            print(
                f"| {name} | {numel:,} | {k} | {m['mask_ms']:.1f} | "
                f"{100 * m['mask_ms'] / 1e3 / LOCAL_EPOCH_S:.3f}% | {m['bytes_ratio']:.5f}x | "
                f"{m['unmask_ms']:.1f} | {anchors[name]} |"
            )


if __name__ == "__main__":
    main()
