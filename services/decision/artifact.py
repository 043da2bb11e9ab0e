"""Layout of a model artifact on disk.

An artifact is a folder ``<root>/<version>/`` holding ``model.txt`` (LightGBM text format),
``manifest.json`` and the other files of its bundle (see bundle.py). A root folder, the
model registry, may hold several versions and a ``CURRENT`` file that names the one to
serve.
"""

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MODEL_FILE = "model.txt"
MANIFEST_FILE = "manifest.json"
CURRENT_FILE = "CURRENT"
MANIFEST_FORMAT_VERSION = 1


class ArtifactNotFoundError(FileNotFoundError):
    """No usable model artifact exists at the configured path."""


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_artifact_dir(path: Path) -> Path:
    """Return the artifact folder that path names, directly or through its CURRENT file.

    Raises ArtifactNotFoundError, with the command that creates one, when there is none.
    """
    hint = "train one with: python -m services.decision.train --out " + str(path)
    if (path / MANIFEST_FILE).is_file():
        return path

    current = path / CURRENT_FILE
    if current.is_file():
        version = current.read_text(encoding="utf-8").strip()
        if not version or "/" in version or version.startswith("."):
            raise ArtifactNotFoundError(
                f"{current} names an invalid model version {version!r}"
            )
        if (path / version / MANIFEST_FILE).is_file():
            return path / version
        raise ArtifactNotFoundError(
            f"{current} names version {version!r}, but {path / version / MANIFEST_FILE} "
            f"is missing; {hint}"
        )

    raise ArtifactNotFoundError(
        f"no model artifact at {path}: expected {MANIFEST_FILE} or a {CURRENT_FILE} "
        f"file there; {hint}"
    )


def write_artifact(
    root: Path,
    version: str,
    model_text: str,
    manifest: dict[str, Any],
    extra_files: Mapping[str, bytes] | None = None,
    promote: bool = True,
) -> Path:
    """Write ``root/version/`` and, with promote, point ``root/CURRENT`` at it.

    extra_files maps file names to their bytes. The folder is written under a temporary
    name and renamed, and CURRENT is replaced by rename, so a reader sees either the
    previous version or the complete new one. Returns the folder. Raises FileExistsError
    when the version folder already exists.
    """
    root.mkdir(parents=True, exist_ok=True)
    target = root / version
    if target.exists():
        raise FileExistsError(f"model version folder {target} already exists")

    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=root))
    try:
        (staging / MODEL_FILE).write_text(model_text, encoding="utf-8")
        (staging / MANIFEST_FILE).write_text(
            json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8"
        )
        for name, data in (extra_files or {}).items():
            (staging / name).write_bytes(data)
        os.chmod(staging, 0o755)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    if promote:
        point_current(root, version)
    return target


def point_current(root: Path, version: str) -> None:
    """Replace ``root/CURRENT`` by rename, so a reader sees the old or the new version."""
    pointer = root / f".{CURRENT_FILE}.{os.getpid()}.tmp"
    pointer.write_text(version + "\n", encoding="utf-8")
    pointer.replace(root / CURRENT_FILE)
