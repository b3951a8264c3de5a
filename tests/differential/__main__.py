"""`python -m tests.differential [-k TEXT] [--mode tcache|auto] [--all]`: run the hand-written
scenarios without pytest and print the to-do list: each failing scenario with its first
difference, then a count per group (`--all` also lists the ones that pass)."""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

from .harness import compare, fork_server
from .test_scenarios import SCENARIOS


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.differential")
    parser.add_argument("-k", default="", help="only scenarios whose name contains this")
    parser.add_argument("--mode", default="tcache", choices=["tcache", "auto"])
    parser.add_argument("--all", action="store_true", help="list passing scenarios too")
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if args.k in s.name]
    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, fork_server(Path(tmp)) as server:
        for scenario in chosen:
            plain, cached = server.run_many([(scenario, "plain"), (scenario, args.mode)])
            diffs = compare(scenario, plain, cached)
            counts[scenario.group][0 if diffs else 1] += 1
            if diffs:
                print(f"FAIL {diffs[0]}")
            elif args.all:
                print(f"ok   {scenario.name}")
            sys.stdout.flush()
    print(f"\n{len(chosen)} scenarios in {time.monotonic() - t0:.0f} s (mode {args.mode})")
    for group, (failed, passed) in sorted(counts.items()):
        print(f"  {group:12} {failed:4} failing {passed:4} passing")
    return 1 if any(f for f, _ in counts.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
