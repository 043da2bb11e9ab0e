"""Requests for MLServer's V2 gRPC inference protocol, built in MLServer's own venv.

Usage (with the Python of the MLServer virtual environment, not the project's):

    python bench/mlserver_client.py TARGET MODEL ROWS_JSON REQUESTS_OUT

It writes one serialized ModelInferRequest per row of ROWS_JSON (a JSON list of feature
rows) to REQUESTS_OUT, each prefixed with its length as 4 big-endian bytes. Then it waits
until MODEL is ready on TARGET, sends the first rows once, and prints their predictions
as a JSON list, so the caller can compare them with its own. This file imports nothing
from the project or its venv.
"""

import json
import struct
import sys
import time

import grpc

# MLServer is installed in its own venv only, so type checks of the project skip it.
from mlserver.grpc import dataplane_pb2 as pb  # type: ignore[import-not-found]
from mlserver.grpc import dataplane_pb2_grpc

READY_TIMEOUT_SECONDS = 120.0
CHECKED_ROWS = 20


def infer_request(model: str, row: list[float]) -> pb.ModelInferRequest:
    """Return a request that scores one row as an FP64 tensor of shape [1, len(row)]."""
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="predict",
        datatype="FP64",
        shape=[1, len(row)],
        contents=pb.InferTensorContents(fp64_contents=row),
    )
    return pb.ModelInferRequest(model_name=model, inputs=[tensor])


def wait_ready(stub: dataplane_pb2_grpc.GRPCInferenceServiceStub, model: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            if stub.ModelReady(pb.ModelReadyRequest(name=model), timeout=1).ready:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"model {model} was not ready after {READY_TIMEOUT_SECONDS} s")


def prediction(response: pb.ModelInferResponse) -> float:
    """Return the single value of the first output, from typed or raw contents."""
    output = response.outputs[0]
    if output.contents.fp64_contents:
        return float(output.contents.fp64_contents[0])
    (value,) = struct.unpack("<d", response.raw_output_contents[0][:8])
    return float(value)


def main() -> None:
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    target, model, rows_path, out_path = sys.argv[1:]
    with open(rows_path) as rows_file:
        rows = json.load(rows_file)
    requests = [infer_request(model, row) for row in rows]
    with open(out_path, "wb") as out:
        for request in requests:
            data = request.SerializeToString()
            out.write(struct.pack(">I", len(data)) + data)

    with grpc.insecure_channel(target) as channel:
        stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)
        wait_ready(stub, model)
        checked = [
            prediction(stub.ModelInfer(request, timeout=5))
            for request in requests[:CHECKED_ROWS]
        ]
    print(json.dumps(checked))


if __name__ == "__main__":
    main()
