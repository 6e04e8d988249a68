"""Which S3 client library for the s3:// store: boto3, minio (the Apache-2.0 Python client) or obstore.

    python -m benchmarks.s3_client --size-mb 200 --repeat 3

Each client gets its own fresh virtualenv (under ~/.cache/mlops/bench-s3/, pinned versions below),
so install size and dependency count are what `pip install` brings on top of an empty venv. Each
then runs in its own process against one SeaweedFS server on loopback (built from its Go module,
as the tests use it), with the same job the store does:

- upload: a multipart upload of a `--size-mb` file from disk, 8 MiB parts, 4 in flight;
- download: a streaming GET to a file with the sha256 computed on the fly (how the store reads:
  verified while written, never whole in memory);
- peak RSS of the process (VmHWM) after both, and the import time of the library.

Results go to benchmarks/results/s3_client.json; the README table is written from it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VERSIONS = {"boto3": "boto3==1.44.8", "minio": "minio==7.2.20", "obstore": "obstore==0.12.1"}
MODULE = {"boto3": "boto3", "minio": "minio", "obstore": "obstore"}
PART = 8 << 20
CONCURRENCY = 4
ACCESS, SECRET = "bench", "bench-secret-key-0123456789"
RESULTS = Path(__file__).resolve().parent / "results" / "s3_client.json"


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


# --- the child: one client, standard library + that client only --------------------------------

def _child(client: str, endpoint: str, bucket: str, path: Path, repeat: int) -> dict:
    t = time.perf_counter()
    if client == "boto3":
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ACCESS,
                          aws_secret_access_key=SECRET, config=Config(s3={"addressing_style": "path"}))
        tc = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=CONCURRENCY)

        def up(key: str) -> None:
            s3.upload_file(str(path), bucket, key, Config=tc)

        def chunks(key: str):
            return s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1 << 20)
    elif client == "minio":
        from minio import Minio

        host = endpoint.split("://", 1)[1]
        mc = Minio(host, access_key=ACCESS, secret_key=SECRET, secure=False, region="us-east-1")

        def up(key: str) -> None:
            mc.fput_object(bucket, key, str(path), part_size=PART, num_parallel_uploads=CONCURRENCY)

        def chunks(key: str):
            r = mc.get_object(bucket, key)
            try:
                yield from r.stream(1 << 20)
            finally:
                r.close()
                r.release_conn()
    elif client == "obstore":
        import obstore
        from obstore.store import S3Store

        st = S3Store(bucket, endpoint=endpoint, region="us-east-1", access_key_id=ACCESS,
                     secret_access_key=SECRET, virtual_hosted_style_request=False,
                     client_options={"allow_http": True})

        def up(key: str) -> None:
            obstore.put(st, key, path, chunk_size=PART, max_concurrency=CONCURRENCY)

        def chunks(key: str):
            return obstore.get(st, key).stream(min_chunk_size=1 << 20)
    else:
        raise SystemExit(f"unknown client {client}")
    import_s = time.perf_counter() - t
    want = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            want.update(block)
    ups, downs = [], []
    rss_base = _reset_peak()
    up_peak = down_peak = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            key = f"{client}/{i}/blob"
            _reset_peak()
            t = time.perf_counter()
            up(key)
            ups.append(time.perf_counter() - t)
            up_peak = max(up_peak, _status_kb("VmHWM"))
            _reset_peak()
            t = time.perf_counter()
            h = hashlib.sha256()
            with open(Path(tmp) / "out", "wb") as f:
                for c in chunks(key):
                    h.update(c)
                    f.write(c)
            downs.append(time.perf_counter() - t)
            down_peak = max(down_peak, _status_kb("VmHWM"))
            if h.hexdigest() != want.hexdigest():
                raise SystemExit(f"{client}: downloaded bytes differ from the upload")
    return {"client": client, "import_s": round(import_s, 3), "upload_s": [round(x, 3) for x in ups],
            "download_s": [round(x, 3) for x in downs], "rss_after_import_mb": round(rss_base / 1024, 1),
            "upload_peak_rss_growth_mb": round((up_peak - rss_base) / 1024, 1),
            "download_peak_rss_growth_mb": round((down_peak - rss_base) / 1024, 1),
            "faults": _faults(client, endpoint, bucket)}


def _reset_peak() -> int:
    """Reset the process' peak RSS (VmHWM) to its current RSS (Linux: clear_refs 5); current RSS in kB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status_kb("VmRSS")


def _faults(client: str, endpoint: str, bucket: str) -> dict:
    """What each client raises for the faults the store must name: is it typed (a class or an S3
    code a program can test) or only text? And does the message carry the secret?"""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    cases = {"bucket_missing": (endpoint, "no-such-bucket-bench", SECRET),
             "wrong_secret": (endpoint, bucket, "wrong-secret-" + SECRET),
             "endpoint_unreachable": (closed, bucket, SECRET)}
    out = {}
    for name, (ep, bkt, secret) in cases.items():
        t = time.perf_counter()
        try:
            _get_small(client, ep, bkt, secret)
            out[name] = {"raised": None}
            continue
        except Exception as e:  # noqa: BLE001 (recorded)
            code = getattr(e, "code", None)  # minio S3Error
            resp = getattr(e, "response", None)
            if code is None and isinstance(resp, dict):  # botocore ClientError
                code = resp.get("Error", {}).get("Code")
            out[name] = {"raised": type(e).__module__ + "." + type(e).__name__,
                         "code": code if isinstance(code, str) else None,
                         "seconds": round(time.perf_counter() - t, 2),
                         "secret_in_message": secret in str(e) or secret in repr(e),
                         "message": str(e).splitlines()[0][:160]}
    return out


def _get_small(client: str, endpoint: str, bucket: str, secret: str) -> None:
    """GET one object with 3 retries, 2 s timeouts: the fault probe's request."""
    if client == "boto3":
        import boto3
        from botocore.config import Config

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ACCESS,
                     aws_secret_access_key=secret,
                     config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 4, "mode": "standard"},
                                   connect_timeout=2, read_timeout=2)).get_object(Bucket=bucket, Key="k")
    elif client == "minio":
        import urllib3
        from minio import Minio

        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2, read=2),
                                   retries=urllib3.Retry(total=3, backoff_factor=0.2,
                                                         status_forcelist=(500, 502, 503, 504)))
        Minio(endpoint.split("://", 1)[1], access_key=ACCESS, secret_key=secret, secure=False,
              region="us-east-1", http_client=http).get_object(bucket, "k")
    else:
        import datetime

        import obstore
        from obstore.store import S3Store

        st = S3Store(bucket, endpoint=endpoint, region="us-east-1", access_key_id=ACCESS, secret_access_key=secret,
                     virtual_hosted_style_request=False,
                     client_options={"allow_http": True, "connect_timeout": "2s", "timeout": "2s"},
                     retry_config={"max_retries": 3, "retry_timeout": datetime.timedelta(seconds=10)})
        obstore.get(st, "k").bytes()


# --- the driver -----------------------------------------------------------------------------------

def _site_kb(venv: Path) -> int:
    site = next((venv / "lib").glob("python3*/site-packages"))
    return sum(f.stat().st_size for f in site.rglob("*") if f.is_file()) // 1024


def _venv(root: Path, name: str, req: str | None) -> Path:
    venv = root / name
    stamp = venv / ".req"
    if not (stamp.exists() and stamp.read_text() == (req or "")):
        base = getattr(sys, "_base_executable", None) or sys.executable
        subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
        if req:
            subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", req], check=True,
                           capture_output=True)
        stamp.write_text(req or "")
    return venv


def _clean_env() -> dict[str, str]:
    """The environment without PYTHONPATH: a client's venv sees only what pip put in it."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _installed(venv: Path) -> list[str]:
    out = subprocess.run([str(venv / "bin/python"), "-m", "pip", "list", "--format=freeze"],
                         capture_output=True, text=True, check=True, env=_clean_env()).stdout.split()
    return sorted(x for x in out if not x.lower().startswith(("pip==", "setuptools==")))


def _resolves(req: str) -> str:
    """Whether `req` installs beside the project's pinned dependencies (pip's resolver, dry run)."""
    repo = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "-c", str(repo / "constraints.txt"),
                        "-e", f"{repo}[dev]", req], capture_output=True, text=True)
    if p.returncode == 0:
        return "yes"
    conflict = [ln.strip() for ln in p.stdout.splitlines() + p.stderr.splitlines() if "depends on" in ln]
    return "no: " + "; ".join(conflict[:3]) if conflict else "no: " + (p.stderr.strip().splitlines() or ["?"])[-1]


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clients", nargs="+", default=list(VERSIONS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--endpoint", help=argparse.SUPPRESS)
    ap.add_argument("--bucket", help=argparse.SUPPRESS)
    ap.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.child, a.endpoint, a.bucket, a.file, a.repeat)))
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))
    from mlops_operator.localcluster.seaweedfs import S3Identity, SeaweedServer, ensure_weed

    root = Path(os.environ.get("MLOPS_CACHE_DIR", Path.home() / ".cache/mlops")) / "bench-s3"
    empty_kb = _site_kb(_venv(root, "empty", None))
    weed = ensure_weed()
    results: dict = {"size_mb": a.size_mb, "repeat": a.repeat, "part_mb": PART >> 20, "concurrency": CONCURRENCY,
                     "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
                     "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "server": f"SeaweedFS {weed.parent.parent.name} (weed server -filer -s3, loopback)",
                     "clients": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "blob"
        with open(data, "wb") as f:
            for _ in range(a.size_mb):
                f.write(os.urandom(1 << 20))
        with SeaweedServer(Path(tmp) / "weed", [S3Identity("bench", ACCESS, SECRET)], binary=weed) as srv:
            bucket = "bench"
            srv.create_bucket(bucket)
            for client in a.clients:
                venv = _venv(root, client, VERSIONS[client])
                out = subprocess.run(
                    [str(venv / "bin/python"), __file__, "--child", client, "--endpoint", srv.endpoint,
                     "--bucket", bucket, "--file", str(data), "--repeat", str(a.repeat)],
                    capture_output=True, text=True, timeout=1800, env=_clean_env())
                if out.returncode != 0:
                    raise SystemExit(f"{client} failed:\n{out.stderr[-3000:]}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                r["version"] = VERSIONS[client]
                r["install_mb"] = round((_site_kb(venv) - empty_kb) / 1024, 1)
                r["installed"] = _installed(venv)
                r["resolves_with_project_pins"] = _resolves(VERSIONS[client])
                r["upload_mb_s"] = round(a.size_mb / _median(r["upload_s"]), 1)
                r["download_mb_s"] = round(a.size_mb / _median(r["download_s"]), 1)
                results["clients"][client] = r
                print(f"{client:8} install {r['install_mb']:6.1f} MB ({len(r['installed'])} dists)  "
                      f"import {r['import_s']:.2f}s  up {r['upload_mb_s']:7.1f} MB/s  "
                      f"down+sha256 {r['download_mb_s']:7.1f} MB/s  RSS +{r['upload_peak_rss_growth_mb']} MB up, "
                      f"+{r['download_peak_rss_growth_mb']} MB down  resolves: {r['resolves_with_project_pins']}",
                      flush=True)
                for fault, f in r["faults"].items():
                    print(f"         {fault:21} {f.get('raised')} code={f.get('code')} {f.get('seconds')}s "
                          f"secret_in_message={f.get('secret_in_message')}", flush=True)
    results["load_average_at_end"] = os.getloadavg()
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
