"""Generate the Python protobuf and gRPC code, with mypy stubs, from protos/.

Usage: python scripts/generate_protos.py [OUTPUT_DIR]

OUTPUT_DIR defaults to gen/python. The output is committed; tests/test_protos.py
regenerates it into a temporary folder and fails when the committed copy differs.
"""

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
DEFAULT_OUTPUT = ROOT / "gen" / "python"


def proto_files() -> list[Path]:
    """Return every .proto file under protos/, sorted for stable output."""
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(output: Path) -> None:
    """Run protoc with the Python, gRPC and mypy plugins into output."""
    output.mkdir(parents=True, exist_ok=True)
    protoc_include = Path(protoc.__file__).parent / "_proto"
    files = [str(path.relative_to(PROTO_ROOT)) for path in proto_files()]
    # The mypy plugins are console scripts beside this interpreter, which need not be on PATH.
    scripts = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-mypy={scripts / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={scripts / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_ROOT}",
        f"-I{protoc_include}",
        f"--python_out={output}",
        f"--grpc_python_out={output}",
        f"--mypy_out={output}",
        f"--mypy_grpc_out={output}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")

    # Every generated folder is a regular package, so setuptools and mypy find it.
    for folder in [output / "trustfirst", *(output / "trustfirst").rglob("*")]:
        if folder.is_dir():
            (folder / "__init__.py").touch()


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT)
