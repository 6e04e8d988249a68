"""Run by tests/unit/test_serving_grpc.py with the Python of a virtualenv that has `kserve`
(which does not install next to the project's pins): KServe's own InferenceGRPCClient, unchanged,
against a running server. argv: port, a JSON file of the request columns. Prints one JSON
document of what it saw; imports nothing of the project."""

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceGRPCClient, InferInput, InferRequest


def inputs(columns, binary):
    out = []
    for c in columns:
        if c["datatype"] == "BYTES":
            arr = np.array(c["data"], dtype=object).reshape(-1, 1)
        else:
            arr = np.array([np.nan if v is None else v for v in c["data"]], dtype=np.float32).reshape(-1, 1)
        i = InferInput(c["name"], list(arr.shape), c["datatype"])
        i.set_data_from_numpy(arr, binary_data=binary)
        out.append(i)
    return out


async def main(port, path):
    with open(path) as f:
        columns = json.load(f)
    seen = {}
    client = InferenceGRPCClient(url=f"127.0.0.1:{port}", timeout=30, retries=0)
    try:
        seen["live"] = await client.is_server_live()
        seen["ready"] = await client.is_server_ready()
        seen["model_ready"] = await client.is_model_ready("retail")
        for binary in (False, True):  # typed contents, then raw_input_contents
            res = await client.infer(InferRequest(model_name="retail", infer_inputs=inputs(columns, binary),
                                                  request_id=f"k-{binary}"))
            probs = next(o for o in res.outputs if o.name == "probabilities").as_numpy()
            seen[f"binary={binary}"] = {"id": res.id, "probabilities": probs.tolist()}
        for name, call in (
            ("unknown model", client.is_model_ready("other")),
            ("missing input", client.infer(InferRequest(model_name="retail", infer_inputs=inputs(columns, False)[1:]))),
        ):
            try:
                await call
                seen[name] = None
            except Exception as e:  # grpc.aio.AioRpcError
                seen[name] = [e.code().name, e.details()]
    finally:
        await client.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
