"""The retail loop's client (cli/retail_loop.py Traffic) against a real model server with
payload capture on: every request carries an id, its purchases come back as feedback under
that id, so the captured traffic joins its labels and becomes the rows the loop retrains on
(the e2e test runs the same on the cluster; this checks the join without one)."""

from __future__ import annotations


import pyarrow as pa
import pytest
import requests

from mlops_operator.cli import retail_loop
from mlops_operator.data import capture as dcap

from .test_capture import _wait
from .test_serving import ServerThread, build_artifact


@pytest.fixture(scope="module")
def propensity(tmp_path_factory):
    return build_artifact(tmp_path_factory.mktemp("propensity"), name=retail_loop.MODEL)


def test_the_loops_traffic_is_captured_with_its_labels(propensity, tmp_path):
    cap = tmp_path / "captures" / retail_loop.MODEL
    cfg = propensity.cfg(capture_rate=1.0, capture_dir=str(cap), capture_flush_seconds=0.2)
    with ServerThread(cfg) as s:
        meta = requests.get(f"{s.url}/v2/models/{retail_loop.MODEL}", timeout=5).json()
        tr = retail_loop.Traffic(s.url, meta["inputs"], interval=0.0)
        tr.thread.start()
        assert _wait(lambda: tr.requests >= 12, 20.0)
        tr.stop.set()
        tr.thread.join(20)
        assert not tr.failed, tr.failed[:3]
        sent = tr.requests
        labelled = (sent - retail_loop.FEEDBACK_DELAY) * retail_loop.BATCH  # feedback lags FEEDBACK_DELAY requests
        stats = lambda: requests.get(f"{s.url}/mlops/v1/models/{retail_loop.MODEL}/stats", timeout=5).json()["capture"]  # noqa: E731
        assert _wait(lambda: stats()["labels"] >= labelled and stats()["rows"] == sent * retail_loop.BATCH, 20.0)
    t = pa.Table.from_batches(list(dcap.capture_batches(cap)))
    assert t.num_rows == labelled
    assert set(t.column("purchased").to_pylist()) == {0, 1}
    assert {i["name"] for i in meta["inputs"]} | {"purchased", dcap.TIME_COLUMN} == set(t.column_names)
    # the client's own record of what it was served agrees with the requests it counted
    assert sum(n for _, _, n in tr.correct) == sent * retail_loop.BATCH
