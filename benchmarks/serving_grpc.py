"""Benchmark: our model server's gRPC Open Inference Protocol against its REST one: the same
process, model and rows, in one run; and a bare grpc.aio server as the gRPC stack's ceiling.

    .venv/bin/python -m benchmarks.serving_grpc [--duration 4] [--rows 8000] [--batches 1,32]
                                                [--concurrency 1,8] [--repeat 1]

One server (`python -m mlops_operator.serving`, uvloop, every feature on: validation, drift
histograms, metrics) listens for REST and gRPC. The model is benchmarks/serving.py's: a
GradientBoostingClassifier (100 trees) in the project's preprocessing pipeline, 18 features
(12 numeric, 2 boolean, 4 categorical); the requests are the same 1 and 32 rows of its test
split (nulls included), three ways:

    REST        V2 JSON, one tensor per feature (what benchmarks/serving.py sends)
    gRPC raw    ModelInfer with raw_input_contents (what tritonclient.grpc sends)
    gRPC typed  ModelInfer with typed contents (fp32_contents, bytes_contents: what kserve's
                client sends)

and, as the ceiling of Python gRPC on this machine, `bare grpc.aio`: a grpc.aio server (uvloop)
whose ModelInfer returns fixed bytes without reading the request (gRPC raw requests).

Load: REST by `wrk -t1`, gRPC by `h2load -t1` (nghttp2) sending the gRPC frame of the message
with `content-type: application/grpc`: both native, about 20-40 µs of client CPU per request.
(ghz, the usual gRPC load tool, spent 140-200 µs per request here: on a 2-core machine that the
client shares with the server, it would have measured ghz as much as the server.) N connections: N
connections with one request in flight on each, for both. h2load does not read gRPC statuses, so
the answers are checked before the load (against scikit-learn's probabilities, 1e-5) and the
server's own count of gRPC requests that were not OK is checked after it (must stay 0). Per point:
req/s, p50/p99 latency, and the server's CPU time per request (all its threads, from /proc): the
cost that does not depend on the load generator. Results: benchmarks/results/serving_grpc.json.

Needs `wrk` and `h2load` (`apt-get install wrk nghttp2-client`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.serving import LUA, MODEL, Server, build, free_port, ours, wrk

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "serving_grpc.json"
KINDS = ("rest", "grpc-raw", "grpc-typed", "bare-grpc")
PATH = "/inference.GRPCInferenceService/ModelInfer"

#: the gRPC stack alone: ModelInfer answers fixed bytes (a valid response) without decoding
BARE_GRPC = r"""
import asyncio, sys
import grpc, uvloop
port, resp = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
async def infer(data, context):
    return resp
async def ready(data, context):
    return b"\x08\x01"  # ServerReadyResponse(ready=True)
async def main():
    s = grpc.aio.server()
    rpc = grpc.unary_unary_rpc_method_handler
    s.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {
        "ModelInfer": rpc(infer), "ServerReady": rpc(ready)}),))
    s.add_insecure_port(f"127.0.0.1:{port}")
    await s.start()
    await s.wait_for_termination()
uvloop.install()
asyncio.run(main())
"""


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def h2load(port: int, frame: Path, connections: int, seconds: float, work: Path) -> dict[str, Any]:
    """gRPC unary calls with h2load: one stream in flight per connection; latencies from its log."""
    log = work / "h2load.log"
    log.unlink(missing_ok=True)  # h2load appends
    p = subprocess.run(["h2load", "-t1", "-c", str(connections), "-m", "1", "-D", str(max(1, round(seconds))),
                        "-d", str(frame), "-H", "content-type: application/grpc", "-H", "te: trailers",
                        "--log-file", str(log), f"http://127.0.0.1:{port}{PATH}"],
                       capture_output=True, text=True, errors="replace", timeout=seconds + 60)
    rows = [line.split("\t") for line in log.read_text().splitlines()] if log.exists() else []
    lat = sorted(int(r[2]) / 1000 for r in rows if len(r) >= 3)
    if not lat:
        return {"rps": 0.0, "error": (p.stderr or p.stdout)[-1500:]}
    n = len(lat)
    return {"rps": n / max(1, round(seconds)), "p50_ms": lat[n // 2], "p99_ms": lat[min(n - 1, int(n * 0.99))],
            "count": n, "non200": sum(1 for r in rows if r[1] != "200")}


def grpc_requests(json_body: bytes) -> dict[str, bytes]:
    """The REST request's tensors as ModelInferRequest messages: raw and typed contents."""
    import struct

    import numpy as np
    import orjson

    from mlops_operator.serving.proto import grpc_predict_v2_pb2 as pb

    doc = orjson.loads(json_body)
    raw = pb.ModelInferRequest(model_name=MODEL)
    typed = pb.ModelInferRequest(model_name=MODEL)
    for t in doc["inputs"]:
        for req in (raw, typed):
            req.inputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        if t["datatype"] == "BYTES":
            data = [s.encode() for s in t["data"]]
            raw.raw_input_contents.append(b"".join(struct.pack("<I", len(b)) + b for b in data))
            typed.inputs[-1].contents.bytes_contents.extend(data)
        else:
            vals = np.array([np.nan if v is None else v for v in t["data"]], dtype="<f4")
            raw.raw_input_contents.append(vals.tobytes())
            typed.inputs[-1].contents.fp32_contents.extend(vals.tolist())
    return {"grpc-raw": raw.SerializeToString(), "grpc-typed": typed.SerializeToString()}


def check_grpc(port: int, body: bytes, want: list[list[float]]) -> tuple[str | None, bytes]:
    """(what is wrong with the answer or None, the answer's bytes)."""
    import grpc
    import numpy as np

    from mlops_operator.serving.proto import grpc_predict_v2_pb2 as pb

    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_unary(PATH, request_serializer=None, response_deserializer=None)
        data = call(body, timeout=30)
    resp = pb.ModelInferResponse.FromString(data)
    i = [o.name for o in resp.outputs].index("probabilities")
    out = resp.outputs[i]
    got = (np.frombuffer(resp.raw_output_contents[i], "<f4") if resp.raw_output_contents
           else np.array(out.contents.fp32_contents)).reshape(list(out.shape))
    if np.max(np.abs(got - np.array(want))) > 1e-5:
        return "gRPC probabilities differ from scikit-learn", data
    return None, data


def grpc_frame(msg: bytes) -> bytes:
    """A gRPC message on the wire: not compressed (0), its length (big-endian), the message."""
    return b"\0" + struct.pack(">I", len(msg)) + msg


def start_bare(resp: bytes) -> tuple[subprocess.Popen, int]:
    import socket
    import time

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BARE_GRPC, str(port), resp.hex()], start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the bare grpc.aio server did not start")


def grpc_not_ok(srv: Server) -> int:
    """gRPC requests our server answered with an error so far (its Prometheus counters); not those
    the client gave up on (499: h2load resets the streams in flight when its time is up)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(srv.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return int(sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "mlops_serving_requests_total" and s.labels.get("protocol") == "grpc"
                   and s.labels.get("code") not in ("200", "499")))


def _ratio(x: dict[str, Any] | None, base: dict[str, Any] | None) -> str:
    return f"{x['rps'] / base['rps']:.2f}x" if x and base and base["rps"] else ""


def _cell(x: dict[str, Any] | None) -> str:
    if not x or "p50_ms" not in x:
        return ""
    cpu = f", {x['server_cpu_us']:.0f} µs" if x.get("server_cpu_us") else ""
    return f"{x['rps']:,.0f} ({x['p50_ms']:.2f} / {x['p99_ms']:.2f}{cpu})"


def table(res: dict[str, Any]) -> str:
    pts = {(p["kind"], p["batch"], p["connections"]): p for p in res["points"]}
    lines = ["| batch | conns | REST | gRPC raw | gRPC typed | bare grpc.aio | raw / REST | typed / REST "
             "| raw / bare grpc.aio |", "|---|---|---|---|---|---|---|---|---|"]
    for b in res["batches"]:
        for c in res["concurrency"]:
            r, g, t, bare = (pts.get((k, b, c)) for k in KINDS)
            lines.append(f"| {b} | {c} | {_cell(r)} | {_cell(g)} | {_cell(t)} | {_cell(bare)} | {_ratio(g, r)} "
                         f"| {_ratio(t, r)} | {_ratio(g, bare)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=4.0, help="seconds of load per point")
    ap.add_argument("--rows", type=int, default=8000, help="rows of retail data to train on")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds over all points; each point reports the round with the median req/s")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    missing = [t for t in ("wrk", "h2load") if shutil.which(t) is None]
    if missing:
        print(f"missing: {', '.join(missing)} (apt-get install wrk nghttp2-client)", file=sys.stderr)
        return 2
    batches = [int(x) for x in a.batches.split(",")]
    conns = [int(x) for x in a.concurrency.split(",")]
    res: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_before": os.getloadavg()},
        "command": "python -m benchmarks.serving_grpc " + " ".join(argv if argv is not None else sys.argv[1:]),
        "duration_s": a.duration, "batches": batches, "concurrency": conns, "points": [],
        "load_generators": {"rest": "wrk -t1", "grpc": subprocess.run(["h2load", "--version"], capture_output=True,
                                                                       text=True).stdout.strip() + " -t1 -m1"},
    }
    with tempfile.TemporaryDirectory(prefix="bench-grpc-") as tmp:
        work = Path(tmp)
        lua = work / "post.lua"
        lua.write_text(LUA)
        print(f"training the model on {a.rows} rows ...", flush=True)
        model = build(work, a.rows, a.seed, "gb100")
        bodies: dict[tuple[str, int], Path] = {}
        for n in batches:
            bodies["rest", n] = model["bodies"][n]
            for kind, data in grpc_requests(model["bodies"][n].read_bytes()).items():
                bodies[kind, n] = work / f"{kind}-{n}.grpc"
                bodies[kind, n].write_bytes(grpc_frame(data))
            bodies["bare-grpc", n] = bodies["grpc-raw", n]
        res["request_bytes"] = {f"{k}-{n}": p.stat().st_size for (k, n), p in bodies.items()}
        gport = free_port()
        srv = ours(model, True, grpc_port=gport)
        srv.start()
        bare_resp = b""
        for n in batches:
            for kind in ("grpc-raw", "grpc-typed"):
                msg = bodies[kind, n].read_bytes()[5:]
                err, answer = check_grpc(gport, msg, model["expected"][n]["proba"])
                if err:
                    srv.stop()
                    raise SystemExit(f"{kind} batch {n}: {err}")
                if kind == "grpc-raw" and n == batches[0]:
                    bare_resp = answer  # the bare server answers what ours answers for batch 1
        bare, bport = start_bare(bare_resp)
        try:
            url = srv.url + f"/v2/models/{MODEL}/infer"
            wrk(url, bodies["rest", 1], 8, 2.0, lua)  # warm-up, both protocols
            h2load(gport, bodies["grpc-raw", 1], 8, 2.0, work)
            before_not_ok = grpc_not_ok(srv)
            rounds: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
            for _ in range(a.repeat):
                for b in batches:
                    for c in conns:
                        for kind in KINDS:  # interleaved, so a noisy second hits all of them
                            pid = bare.pid if kind == "bare-grpc" else srv.proc.pid
                            cpu0 = _cpu_s(pid)
                            if kind == "rest":
                                r = wrk(url, bodies[kind, b], c, a.duration, lua)
                                r.pop("raw", None)
                            else:
                                r = h2load(bport if kind == "bare-grpc" else gport, bodies[kind, b], c, a.duration,
                                           work)
                            r["server_cpu_us"] = (1e6 * (_cpu_s(pid) - cpu0) / (r["rps"] * max(1, round(a.duration)))
                                                  if r["rps"] else None)
                            r.update(kind=kind, batch=b, connections=c, rows_per_s=r["rps"] * b)
                            rounds.setdefault((kind, b, c), []).append(r)
                            print(f"  {kind:<11} batch {b:>2} c{c:<2} {r['rps']:>8.0f} req/s  p50 "
                                  f"{r.get('p50_ms', 0):.2f} ms  p99 {r.get('p99_ms', 0):.2f} ms  server CPU "
                                  f"{r['server_cpu_us'] or 0:.0f} µs/req", flush=True)
            for same in rounds.values():
                same.sort(key=lambda q: q["rps"])
                mid = dict(same[(len(same) - 1) // 2])
                mid["rounds_rps"] = [q["rps"] for q in same]
                res["points"].append(mid)
            res["grpc_not_ok_during_load"] = grpc_not_ok(srv) - before_not_ok
            res["server_rss_mb"] = round(srv.rss_mb(), 1)
        finally:
            srv.stop()
            bare.kill()
            bare.wait()
    res["machine"]["loadavg_after"] = os.getloadavg()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2, default=str))
    print()
    print(table(res))
    print(f"\ngRPC requests not OK during the load: {res['grpc_not_ok_during_load']}")
    print(f"results: {a.out}")
    return 0 if res["grpc_not_ok_during_load"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
