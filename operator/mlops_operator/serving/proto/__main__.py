"""`python -m mlops_operator.serving.proto [--check]`: regenerate grpc_predict_v2_pb2.py / .pyi.

protoc (from grpcio-tools, the dev extra) compiles grpc_predict_v2.proto; the result is then
moved into a descriptor pool of its own (see __init__.py). `--check` writes nothing and exits 1
when the checked-in files differ from what the .proto generates.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]  # the directory holding mlops_operator/
PROTO = "mlops_operator/serving/proto/grpc_predict_v2.proto"
OUTPUTS = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi")
_DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
_OWN_POOL = ("# a pool of its own: Triton's and KServe's clients define the same names in the default pool\n"
             "POOL = _descriptor_pool.DescriptorPool()\n"
             "DESCRIPTOR = POOL.AddSerializedFile(")


def generate() -> dict[str, str]:
    """The generated files' text, by file name."""
    from grpc_tools import protoc  # dev extra only: the server imports the generated files

    with tempfile.TemporaryDirectory() as out:
        rc = protoc.main(["protoc", f"-I{ROOT}", f"--python_out={out}", f"--pyi_out={out}", str(ROOT / PROTO)])
        if rc != 0:
            raise SystemExit(f"protoc failed ({rc})")
        gen = Path(out) / Path(PROTO).parent
        texts = {name: (gen / name).read_text() for name in OUTPUTS}
    py = texts[OUTPUTS[0]]
    if py.count(_DEFAULT_POOL) != 1:
        raise SystemExit("protoc's output changed: cannot move the descriptors into a pool of their own")
    texts[OUTPUTS[0]] = py.replace(_DEFAULT_POOL, _OWN_POOL)
    return texts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mlops_operator.serving.proto", description=__doc__)
    p.add_argument("--check", action="store_true", help="compare with the checked-in files, write nothing")
    a = p.parse_args(argv)
    stale = []
    for name, text in generate().items():
        path = HERE / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not a.check:
            path.write_text(text)
    if a.check and stale:
        print(f"stale: {', '.join(stale)}: run `make grpc-stubs`", file=sys.stderr)
        return 1
    print(("stale: " if a.check else "written: ") + (", ".join(stale) if stale else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
