"""The committed gencode matches protos/, and the contracts pass buf lint."""

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "gen" / "python"


def _files(folder: Path) -> set[str]:
    return {
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_gencode_current(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_protos.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )

    assert _files(tmp_path) == _files(COMMITTED), "run scripts/generate_protos.py"
    stale = [
        name
        for name in sorted(_files(tmp_path))
        if not filecmp.cmp(tmp_path / name, COMMITTED / name, shallow=False)
    ]
    assert stale == [], "run scripts/generate_protos.py"


def _buf() -> str | None:
    local = ROOT / ".tools" / "node_modules" / ".bin" / "buf"
    if local.exists():
        return str(local)
    return shutil.which("buf")


def test_buf_lint() -> None:
    buf = _buf()
    if buf is None:
        if os.environ.get("TRUSTFIRST_REQUIRE_BUF") == "1":
            pytest.fail("buf not found; .ci/run installs it with npm into .tools/")
        pytest.skip("buf not installed (npm install --prefix .tools @bufbuild/buf)")

    result = subprocess.run(
        [buf, "lint"], cwd=ROOT / "protos", capture_output=True, text=True
    )

    assert result.returncode == 0, result.stdout + result.stderr
