"""`kubectl mlops`: compare runs and show lineage (grows with the TrainingRun/ModelVersion issue)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    print("kubectl mlops: no subcommands yet; the experiment-tracking issue adds compare and lineage",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
