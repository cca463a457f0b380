"""Side-by-side A/B of the proxy's memory with 1,000 endpoints (not a test, not part
of `make bench`, which measures this tree alone in bench.scale.proxy_memory).

    git archive main | tar -x -C /tmp/main-tree && cp meshgrpc/codec/*.so /tmp/main-tree/meshgrpc/codec/
    .venv/bin/python -m bench.memory_ab --a /tmp/main-tree [--b .] [--rounds 5]

Each round runs bench.scale.proxy_memory (a control plane and a proxy holding
10 x 100 endpoints, RSS read once it holds them all) from tree A, then from tree
B, with PYTHONPATH and cwd set to the tree; it prints each run and the medians
of VmRSS and VmHWM (peak) per tree, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MEASURE = ("import json, tempfile, bench.scale as s\n"
            "with tempfile.TemporaryDirectory() as d:\n"
            "    print(json.dumps(s.proxy_memory(d)))\n")


def measure(tree: str) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{os.path.join(tree, 'generated')}"}
    out = subprocess.run([sys.executable, "-c", _MEASURE], cwd=tree, env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.memory_ab", description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="tree of version A")
    ap.add_argument("--b", default=HERE, help="tree of version B (default: this one)")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    runs: dict[str, list[dict]] = {"A": [], "B": []}
    for r in range(a.rounds):
        for name, tree in (("A", a.a), ("B", a.b)):
            runs[name].append(measure(os.path.abspath(tree)))
        print(f"round {r + 1}: " + "  ".join(f"{n} {runs[n][-1]['VmRSS'] / 1024:.1f} MiB" for n in runs), flush=True)
    med = {n: {k: statistics.median(x[k] for x in v) / 1024 for k in ("VmRSS", "VmHWM")} for n, v in runs.items()}
    print(f"\nproxy with {runs['A'][0]['endpoints']} endpoints, {a.rounds} interleaved rounds, medians (MiB)")
    for n in runs:
        print(f"{n}  RSS {med[n]['VmRSS']:.1f}  peak {med[n]['VmHWM']:.1f}")
    print(f"B/A RSS {med['B']['VmRSS'] / med['A']['VmRSS']:.2f}")


if __name__ == "__main__":
    main()
