"""Memory benchmark; same as `mirage bench memory`. Example:

    python benchmarks/memory.py --size 176x320 --chunks 10 --out benchmarks/results
    python benchmarks/memory.py --size 704x1280 --device cuda --out benchmarks/results-gpu
"""

import sys

from mirage.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "memory", *sys.argv[1:]]))
