#!/usr/bin/env python
"""Speed benchmark: mvlpt's training path against a reference-style path. The benchmark itself is the
package ``benchmarks/transfer/`` (its docstring says what is measured and how); this is its entry point::

    python benchmarks/bench_transfer.py --preset cpu   # tiny model, CPU, about 2 minutes
    python benchmarks/bench_transfer.py --preset gpu   # ViT-B-16 (random weights), CUDA
    python benchmarks/bench_transfer.py --help
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.transfer.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
