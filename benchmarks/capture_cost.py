"""The CPU that payload capture costs per request, apart from HTTP and the model (issue 19).

    .venv/bin/python -m benchmarks.capture_cost [--runs 20000] [--rate 0.1]

Feeds `serving.capture.Capture` the arrays the batcher hands it (14 numeric and 4 categorical
inputs, binary classifier outputs) for `--runs` model runs of each shape (requests per run x
rows per request), and reports CPU time, not wall-clock time, so the numbers hold on a shared,
loaded machine:

- `loop us/req`: the event loop's share (`offer`, on the request path), per request served;
- `writer us/req`: the writer thread's (conversion, compression, the file), per request served;
- as a share of the server's own CPU per request (`--server-us`, measured with
  `benchmarks.serving`'s `cpu_us_per_req` column, capture off): the throughput a CPU-bound
  server loses to capture.

Run it against another checkout with PYTHONPATH=<checkout>/operator to compare versions.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlops_operator.serving import capture as scap

NUM = [f"n{i}" for i in range(14)]
CAT = [f"c{j}" for j in range(4)]


class _Req:
    __slots__ = ("n", "id")

    def __init__(self, n: int, rid: str):
        self.n, self.id = n, rid


def measure(runs: int, per_run: int, rows: int, rate: float, directory: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    n = per_run * rows
    x = rng.normal(size=(len(NUM), n))
    x[0, ::7] = np.nan
    cats = [[f"v{(i + j) % 5}" for i in range(n)] for j in range(len(CAT))]
    p = rng.random(n).astype(np.float32)
    result = {"label": (p > 0.5).astype(np.int64), "probabilities": np.column_stack([1 - p, p])}
    chunks = [[(_Req(rows, f"r{k}-{i}"), None) for i in range(per_run)] for k in range(runs)]
    c = scap.Capture(directory, rate=rate, instance="bench", start_id="0" * 16, version="1", target="y",
                     numeric=NUM, categorical=CAT, boolean=set(), classes=["0", "1"], max_rows=10**9,
                     chunk_rows=5_000, flush_seconds=30.0, seed=1)
    cpu0 = time.process_time()
    t0 = time.thread_time()
    for chunk in chunks:
        c.offer(chunk, x, cats, result)
    loop = time.thread_time() - t0
    c.close(timeout=600)  # the writer writes what is left; the join itself costs no CPU
    total = time.process_time() - cpu0
    served = runs * per_run
    st = c.stats()
    return {"requests_per_run": per_run, "rows_per_request": rows, "requests": served,
            "sampled": st["sampledRequests"], "rows_written": st["rows"], "dropped": st["dropped"],
            "loop_us_per_req": loop / served * 1e6, "writer_us_per_req": max(total - loop, 0.0) / served * 1e6,
            "bytes": sum(f.stat().st_size for f in directory.iterdir())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--shapes", default="1x1,8x1,1x32,8x32", help="requests per run x rows per request")
    ap.add_argument("--server-us", type=float, default=0.0,
                    help="the server's CPU per request without capture (to report the share)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    import pyarrow.parquet  # noqa: F401 - the server imports it at start, not per request
    res = []
    for shape in a.shapes.split(","):
        per_run, rows = (int(v) for v in shape.split("x"))
        with tempfile.TemporaryDirectory(prefix="capture-cost-") as tmp:
            r = measure(a.runs, per_run, rows, a.rate, Path(tmp))
        res.append(r)
        share = (f"  {(r['loop_us_per_req'] + r['writer_us_per_req']) / a.server_us:6.1%} of the server's"
                 if a.server_us else "")
        print(f"{per_run:>2} req/run x {rows:>2} rows: loop {r['loop_us_per_req']:6.2f} us/req  writer "
              f"{r['writer_us_per_req']:6.2f} us/req  ({r['sampled']} sampled, {r['rows_written']} rows, "
              f"{r['dropped']} dropped, {r['bytes'] / 1e3:.0f} kB){share}", flush=True)
    if a.out:
        a.out.write_text(json.dumps({"command": " ".join(sys.argv), "rate": a.rate, "results": res}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
