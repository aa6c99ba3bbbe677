"""Sequential cached gets with the Python client (clients/python), for bench/clients/run: prints
the p50 and p99 in microseconds. --knob picks grpcio channel options to try (BENCHMARKS.md)."""

import argparse
import time

import psst

KNOBS = {
    "default": [],
    # No BDP probe pings, fixed windows.
    "windows": [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1 << 20)],
    # grpc-core's retry machinery off (psst retries itself).
    "noretry": [("grpc.enable_retries", 0)],
    "keepalive": [("grpc.keepalive_time_ms", 10000), ("grpc.keepalive_timeout_ms", 5000)],
}

parser = argparse.ArgumentParser()
parser.add_argument("--socket", required=True)
parser.add_argument("--n", type=int, default=5000)
parser.add_argument("--ref", default="local:bench/db-password")
parser.add_argument("--knob", default="default", choices=sorted(KNOBS))
args = parser.parse_args()

with psst.Client(args.socket, options=KNOBS[args.knob]) as client:
    samples = []
    for i in range(args.n // 10 + args.n):
        started = time.perf_counter_ns()
        client.get(args.ref)
        if i >= args.n // 10:
            samples.append((time.perf_counter_ns() - started) / 1000)
samples.sort()
print(f"{samples[len(samples) // 2]:.1f} {samples[len(samples) * 99 // 100]:.1f}")
