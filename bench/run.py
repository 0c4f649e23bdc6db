"""Benchmarks: ratios against raw driver throughput measured in the same run.

    python bench/run.py sync --rows N [--db sqlite|postgres|mysql]
    python bench/run.py push --items N
    python bench/run.py reconcile --rows N

Each prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BENCHES = {
    "sync": "sync_bench",
    "push": "push_bench",
    "reconcile": "reconcile_bench",
    "soak": "soak_bench",
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", choices=sorted(BENCHES))
    args, rest = parser.parse_known_args(argv)
    module = __import__(BENCHES[args.bench])
    module.main(rest)


if __name__ == "__main__":
    main()
