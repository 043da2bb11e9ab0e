"""MLServer with its LightGBM runtime, serving the decision model for comparison.

MLServer runs from its own virtual environment (bench/.venv-mlserver by default, set up
as docs/benchmarks.md shows), because its pins differ from the project's. The settings
written here turn off its parallel inference pool (``parallel_workers: 0``). With the
pool on, MLServer 1.7.1's worker processes exit at start-up under uvloop 0.23.0 ("There
is no current event loop in thread 'MainThread'"), so the model never loads. Without the
pool, inference runs in the server's own process, as the decision service's does.
Debug logging and the metrics server are off, as in a production deployment.
"""

import json
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.decision.artifact import MANIFEST_FILE, MODEL_FILE, resolve_artifact_dir
from services.decision.model import load_model
from shared.embedded_redis import free_port

DEFAULT_VENV = Path(__file__).resolve().parent / ".venv-mlserver"
MODEL_NAME = "trustfirst-repeat-purchase"
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
CLIENT_SCRIPT = Path(__file__).resolve().parent / "mlserver_client.py"
# Largest difference allowed between MLServer's prediction and the in-process one.
PREDICTION_TOLERANCE = 1e-9


@dataclass
class MLServerProcess:
    """A running MLServer: its process, gRPC target and the serialized requests."""

    process: subprocess.Popen[bytes]
    target: str
    requests: tuple[bytes, ...]
    versions: dict[str, str]
    max_prediction_difference: float

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def model_file(models_dir: Path) -> Path:
    """Return the LightGBM text file of the current model under models_dir."""
    folder = resolve_artifact_dir(models_dir)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    return folder / str(manifest.get("model_file", MODEL_FILE))


def write_repository(
    folder: Path, model_path: Path, http_port: int, grpc_port: int
) -> None:
    """Write MLServer's settings.json and one model folder serving model_path."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "debug": False,
        "parallel_workers": 0,
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_endpoint": None,
        "load_models_at_startup": True,
    }
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    model_folder = folder / MODEL_NAME
    model_folder.mkdir(exist_ok=True)
    model_settings = {
        "name": MODEL_NAME,
        "implementation": "mlserver_lightgbm.LightGBMModel",
        "parameters": {"uri": str(model_path)},
    }
    (model_folder / "model-settings.json").write_text(
        json.dumps(model_settings, indent=2)
    )


def start_mlserver(
    venv: Path, work_dir: Path, models_dir: Path, rows: list[list[float]]
) -> MLServerProcess:
    """Start MLServer on loopback ports, wait for the model, and build its requests.

    Raises RuntimeError when MLServer exits, never gets ready, or predicts differently
    from the decision service's own model.
    """
    # Absolute, because MLServer runs in this folder and is given it as an argument too.
    repository = work_dir.absolute() / "mlserver"
    grpc_port = free_port()
    write_repository(repository, model_file(models_dir), free_port(), grpc_port)
    log_path = work_dir / "mlserver.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [str(venv / "bin" / "mlserver"), "start", str(repository)],
            cwd=repository,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = MLServerProcess(process, f"127.0.0.1:{grpc_port}", (), {}, 0.0)
    try:
        _prepare(server, venv, work_dir, models_dir, rows, log_path)
    except BaseException:
        server.stop()
        raise
    return server


def _prepare(
    server: MLServerProcess,
    venv: Path,
    work_dir: Path,
    models_dir: Path,
    rows: list[list[float]],
    log_path: Path,
) -> None:
    rows_path = work_dir / "mlserver-rows.json"
    requests_path = work_dir / "mlserver-requests.bin"
    rows_path.write_text(json.dumps(rows))
    completed = subprocess.run(
        [str(venv / "bin" / "python"), str(CLIENT_SCRIPT), server.target, MODEL_NAME,
         str(rows_path), str(requests_path)],
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    if completed.returncode != 0 or server.process.poll() is not None:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(
            f"MLServer did not serve the model: {completed.stderr[-2000:]}\n{tail}"
        )

    served = np.array(json.loads(completed.stdout))
    local = load_model(models_dir).booster.predict(np.array(rows[: served.size]))
    server.max_prediction_difference = float(np.max(np.abs(served - local)))
    if server.max_prediction_difference > PREDICTION_TOLERANCE:
        raise RuntimeError(
            f"MLServer predictions differ from the model's by up to "
            f"{server.max_prediction_difference}"
        )
    server.requests = tuple(read_length_prefixed(requests_path.read_bytes()))
    server.versions = venv_versions(venv)


def read_length_prefixed(data: bytes) -> list[bytes]:
    """Split data into the messages it contains, each after a 4-byte big-endian length."""
    messages = []
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        messages.append(data[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return messages


def venv_versions(venv: Path) -> dict[str, str]:
    """Return the versions of the packages in venv that the comparison depends on."""
    names = [
        "mlserver",
        "mlserver-lightgbm",
        "lightgbm",
        "grpcio",
        "protobuf",
        "uvloop",
    ]
    completed = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import importlib.metadata as m, json, sys; "
         "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))", *names],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )  # fmt: skip
    versions: dict[str, str] = json.loads(completed.stdout)
    return versions
