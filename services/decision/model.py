"""Loading and scoring of the repeat-purchase model."""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from services.decision.artifact import (
    MANIFEST_FILE,
    MANIFEST_FORMAT_VERSION,
    ArtifactNotFoundError,
    resolve_artifact_dir,
    sha256_file,
)
from services.decision.features import FEATURE_NAMES

logger = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """An artifact exists but cannot be served: bad manifest, schema or model file."""


@dataclass(frozen=True)
class RepeatPurchaseModel:
    """A loaded LightGBM model with the facts of its manifest."""

    version: str
    horizon_days: int
    feature_names: tuple[str, ...]
    path: Path
    booster: lgb.Booster

    def predict(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Return the repeat-purchase probability of each row (columns as feature_names).

        One thread: the service scores a few rows per request, where thread start-up
        costs more than it saves, and requests already run in parallel.
        """
        return np.asarray(self.booster.predict(features, num_threads=1))


def load_model(path: Path) -> RepeatPurchaseModel:
    """Load the artifact at path (a version folder, or a root with a CURRENT file).

    Raises ArtifactNotFoundError when there is no artifact, and ModelLoadError when the
    artifact is unusable, for example when its feature schema differs from this code's.
    """
    folder = resolve_artifact_dir(path)
    manifest = _read_manifest(folder / MANIFEST_FILE)

    schema = tuple(manifest.get("feature_schema", ()))
    if schema != FEATURE_NAMES:
        raise ModelLoadError(
            f"{folder}: the model's feature schema {list(schema)} differs from the "
            f"service's {list(FEATURE_NAMES)}; retrain the model with this version"
        )

    model_file = folder / str(manifest.get("model_file", "model.txt"))
    if not model_file.is_file():
        raise ArtifactNotFoundError(
            f"{folder}: model file {model_file.name} is missing"
        )
    expected_hash = manifest.get("model_sha256")
    if expected_hash is not None and sha256_file(model_file) != expected_hash:
        raise ModelLoadError(
            f"{model_file}: SHA-256 differs from the manifest's model_sha256"
        )

    try:
        booster = lgb.Booster(model_file=str(model_file))
    except lgb.basic.LightGBMError as exc:
        raise ModelLoadError(f"{model_file}: LightGBM cannot load it: {exc}") from exc
    if tuple(booster.feature_name()) != FEATURE_NAMES:
        raise ModelLoadError(
            f"{model_file}: the model's feature names {booster.feature_name()} differ "
            "from its manifest's feature_schema"
        )

    model = RepeatPurchaseModel(
        version=str(manifest["version"]),
        horizon_days=int(manifest["label"]["horizon_days"]),
        feature_names=schema,
        path=folder,
        booster=booster,
    )
    logger.info("model %s loaded from %s", model.version, folder)
    return model


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot read the manifest: {exc}") from exc

    if not isinstance(manifest, dict):
        raise ModelLoadError(f"{path}: the manifest is not a JSON object")
    if manifest.get("format_version") != MANIFEST_FORMAT_VERSION:
        raise ModelLoadError(
            f"{path}: unsupported manifest format_version "
            f"{manifest.get('format_version')!r}, expected {MANIFEST_FORMAT_VERSION}"
        )
    for key in ("version", "feature_schema", "label"):
        if key not in manifest:
            raise ModelLoadError(f"{path}: the manifest has no {key!r}")
    if (
        not isinstance(manifest["label"], dict)
        or "horizon_days" not in manifest["label"]
    ):
        raise ModelLoadError(f"{path}: the manifest has no label.horizon_days")
    return manifest
