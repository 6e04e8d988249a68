"""Copy verified files out of the artifact store as text on stdout: `python -m mlops_operator.store.dump`.

The store lives on a volume that only pods can mount, so `kubectl mlops export` runs this module in a
short-lived pod and reads the pod's log. The log is a text channel shared with stderr, so the format
is line based, self-checking and tolerant of foreign lines (a warning printed between two lines is
skipped; the sha256 and size checks catch anything that actually damaged the bytes):

    #mlops-dump v1
    ==> model.onnx <size> <sha256> zlib
    :<base64 of the zlib-compressed bytes, 76 characters a line>
    ...
    <== model.onnx
    ==> model.json <size> <sha256> zlib
    ...
    <== model.json
    #mlops-dump end 2

`size` and `sha256` are of the original bytes. The closing line carries the number of files, so a
stream cut anywhere (a pod killed mid-write, a log truncated by the node) fails to decode instead of
silently yielding fewer files. `encode` and `decode` are pure; `main` is what the pod runs.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import sys
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

MAGIC = "#mlops-dump v1"
END = "#mlops-dump end"
LINE = 76  # base64 characters per data line (57 raw bytes)
_RAW_PER_LINE = LINE // 4 * 3
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
ENCODINGS = ("zlib", "raw")


class DumpError(ValueError):
    """The stream is not a complete, intact dump."""


def check_name(name: str) -> str:
    """A plain file name (no directories, not hidden): the decoder writes files by these names."""
    if not _NAME.match(name) or name in (".", ".."):
        raise DumpError(f"invalid file name {name!r} in dump (plain names only, no '/' or leading '.')")
    return name


def encode(files: Iterable[tuple[str, bytes]], encoding: str = "zlib") -> Iterator[str]:
    """Lines (without newlines) of a dump of `files` (name, bytes), in order."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}")
    yield MAGIC
    n = 0
    seen: set[str] = set()
    for name, data in files:
        check_name(name)
        if name in seen:
            raise DumpError(f"file {name!r} given twice")
        seen.add(name)
        payload = zlib.compress(data, 6) if encoding == "zlib" else data
        yield f"==> {name} {len(data)} {hashlib.sha256(data).hexdigest()} {encoding}"
        for i in range(0, len(payload), _RAW_PER_LINE):
            yield ":" + base64.b64encode(payload[i:i + _RAW_PER_LINE]).decode("ascii")
        yield f"<== {name}"
        n += 1
    yield f"{END} {n}"


def decode(text: str | bytes) -> dict[str, bytes]:
    """Files (name -> bytes, in stream order) of a dump; DumpError when anything is missing or wrong.

    Lines before the opening marker and foreign lines between frames are ignored (log noise); the
    last dump in the text wins if there are several (e.g. a restarted container's log).
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    lines = text.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.strip() == MAGIC]
    if not starts:
        raise DumpError("no dump found in the stream (no '#mlops-dump v1' line)")
    files: dict[str, bytes] = {}
    current: tuple[str, int, str, str] | None = None
    chunks: list[str] = []
    for ln in lines[starts[-1] + 1:]:
        ln = ln.rstrip("\r")
        if current is not None:
            if ln.startswith(":"):
                chunks.append(ln[1:].strip())
            elif ln.startswith("<== "):
                name, size, digest, enc = current
                if ln[4:].strip() != name:
                    raise DumpError(f"file {name!r} closed by {ln!r}")
                files[name] = _finish(name, size, digest, enc, chunks)
                current, chunks = None, []
            elif ln.startswith("==> ") or ln.startswith(END):
                raise DumpError(f"stream truncated: file {current[0]!r} has no end marker")
            # anything else: foreign output interleaved by the log (checked by sha256 below)
            continue
        if ln.startswith("==> "):
            current = _header(ln, files)
        elif ln.startswith(END):
            try:
                want = int(ln[len(END):].strip())
            except ValueError:
                raise DumpError(f"bad end marker {ln!r}") from None
            if want != len(files):
                raise DumpError(f"end marker announces {want} files, stream holds {len(files)}")
            return files
    if current is not None:
        raise DumpError(f"stream truncated inside file {current[0]!r}")
    raise DumpError(f"stream truncated: no end marker after {len(files)} file(s)")


def _header(ln: str, files: dict[str, bytes]) -> tuple[str, int, str, str]:
    parts = ln[4:].split()
    if len(parts) != 4:
        raise DumpError(f"bad file header {ln!r}")
    name, size, digest, enc = parts
    check_name(name)
    if name in files:
        raise DumpError(f"file {name!r} appears twice")
    if not size.isdigit() or not _HEX64.match(digest) or enc not in ENCODINGS:
        raise DumpError(f"bad file header {ln!r}")
    return name, int(size), digest, enc


def _finish(name: str, size: int, digest: str, enc: str, chunks: list[str]) -> bytes:
    try:
        payload = base64.b64decode("".join(chunks), validate=True)
    except (ValueError, TypeError) as e:
        raise DumpError(f"{name}: corrupted data (not base64: {e})") from None
    if enc == "zlib":
        try:
            data = zlib.decompress(payload)
        except zlib.error as e:
            raise DumpError(f"{name}: corrupted data ({e})") from None
    else:
        data = payload
    if len(data) != size:
        raise DumpError(f"{name}: {len(data)} bytes received, header says {size}")
    got = hashlib.sha256(data).hexdigest()
    if got != digest:
        raise DumpError(f"{name}: sha256 {got} does not match the header's {digest}")
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mlops_operator.store.dump",
                                description="Write verified files of a store version to stdout (framed, base64).")
    p.add_argument("--uri", required=True, help="version URI, e.g. file:///store/models/<model>/<digest>/")
    p.add_argument("--file", action="append", required=True, dest="files",
                   help="file of the version to dump (repeat); the first is the primary file")
    p.add_argument("--digest", help="sha256 the first --file must have; refuse to dump otherwise")
    p.add_argument("--store-root", default="/store", help="root of the file store (default /store)")
    p.add_argument("--encoding", choices=ENCODINGS, default="zlib")
    a = p.parse_args(argv)

    from .store import FileStore, StoreError

    store = FileStore(a.store_root)
    try:
        paths = [(check_name(f), store.local_path(a.uri, f, a.digest if i == 0 else None))
                 for i, f in enumerate(a.files)]
        data = [(name, Path(path).read_bytes()) for name, path in paths]
    except (StoreError, DumpError, OSError) as e:
        print(f"dump: {e}", file=sys.stderr)
        return 1
    out = sys.stdout
    for line in encode(data, a.encoding):
        out.write(line + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
