"""`python -m bench` (`make bench`): run every benchmark in turn and print its figures.

Each benchmark is a module here with a `main()` that measures against a baseline taken
in the same run and prints figures; nothing here asserts on time.
"""

from __future__ import annotations

import importlib
import sys
import time

BENCHMARKS = (
    "compare", "app_cost", "resolve", "live_fanout", "analyze", "download", "zip", "hostile",
)  # fmt: skip


def main(names: list[str]) -> int:
    failed = []
    for name in names or BENCHMARKS:
        sys.stdout.write(f"\n=== bench.{name} ===\n")
        sys.stdout.flush()
        started = time.monotonic()
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception as exc:  # report and go on with the others
            failed.append(name)
            sys.stdout.write(f"bench.{name} failed: {type(exc).__name__}: {exc}\n")
        sys.stdout.write(f"(bench.{name} took {time.monotonic() - started:.1f}s)\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
