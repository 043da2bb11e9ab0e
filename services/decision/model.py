"""Loading and scoring of the repeat-purchase model."""

import ctypes
import json
import logging
import threading
import weakref
from dataclasses import dataclass, field
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
    single_row: "SingleRowPredictor | None" = field(
        default=None, compare=False, repr=False
    )

    def predict(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Return the repeat-purchase probability of each row (columns as feature_names).

        One thread: the service scores a few rows per request, where thread start-up
        costs more than it saves, and requests already run in parallel. A single row
        goes through LightGBM's single-row C API when it is available.
        """
        if self.single_row is not None and features.shape[0] == 1:
            return np.array([self.single_row.predict(features[0])])
        return np.asarray(self.booster.predict(features, num_threads=1))


class SingleRowPredictor:
    """LightGBM's fast single-row prediction for one booster, with one thread.

    ``Booster.predict`` builds a predictor, parses its parameters and converts the
    array on every call, about ten times the cost of the prediction itself for one row.
    The single-row C API does that once, in ``LGBM_BoosterPredictForMatSingleRowFastInit``.

    NOTE: the C functions are LightGBM's public C API, but they are reached through
    ``lightgbm.basic._LIB``, which is not a public Python name. ``create`` returns None
    when that fails, and the model falls back to ``Booster.predict``.

    The row and result buffers are reused, so each call takes a lock. The decision
    service scores on its event loop thread, where the lock is never contended.
    """

    def __init__(self, booster: lgb.Booster, columns: int) -> None:
        library: Any = getattr(lgb.basic, "_LIB")  # noqa: B009
        handle = ctypes.c_void_p()
        num_iteration = booster.best_iteration if booster.best_iteration > 0 else -1
        _check(
            library,
            library.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(_PREDICT_NORMAL),
                ctypes.c_int(0),
                ctypes.c_int(num_iteration),
                ctypes.c_int(_DTYPE_FLOAT64),
                ctypes.c_int32(columns),
                ctypes.c_char_p(b"num_threads=1"),
                ctypes.byref(handle),
            ),
        )

        self._library = library
        self._handle = handle
        self._columns = columns
        self._row = np.zeros(columns, dtype=np.float64)
        self._row_pointer = self._row.ctypes.data_as(ctypes.c_void_p)
        self._result = np.zeros(1, dtype=np.float64)
        self._result_pointer = self._result.ctypes.data_as(
            ctypes.POINTER(ctypes.c_double)
        )
        self._result_length = ctypes.c_int64(0)
        self._result_length_pointer = ctypes.byref(self._result_length)

        # The booster is kept alive while the fast handle, which points into it, exists.
        self._booster = booster
        self._lock = threading.Lock()
        weakref.finalize(self, library.LGBM_FastConfigFree, handle)

    @classmethod
    def create(cls, booster: lgb.Booster, columns: int) -> "SingleRowPredictor | None":
        """Return a predictor for booster, or None when LightGBM's C API is unusable."""
        try:
            return cls(booster, columns)
        except (AttributeError, OSError, lgb.basic.LightGBMError) as exc:
            logger.warning(
                "LightGBM single-row prediction unavailable, scoring with "
                "Booster.predict instead: %r",
                exc,
            )
            return None

    def predict(self, row: npt.NDArray[np.float64]) -> float:
        """Return the prediction for one row of columns values."""
        if row.shape != (self._columns,):
            raise ValueError(f"expected {self._columns} values, got {row.shape}")
        with self._lock:
            self._row[:] = row
            _check(
                self._library,
                self._library.LGBM_BoosterPredictForMatSingleRowFast(
                    self._handle,
                    self._row_pointer,
                    self._result_length_pointer,
                    self._result_pointer,
                ),
            )
            return float(self._result[0])


# Constants of LightGBM's c_api.h.
_PREDICT_NORMAL = 0
_DTYPE_FLOAT64 = 1


def _check(library: Any, code: int) -> None:
    """Raise LightGBMError with LightGBM's message when a C API call failed."""
    if code != 0:
        message = library.LGBM_GetLastError().decode("utf-8", errors="replace")
        raise lgb.basic.LightGBMError(message)


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
        single_row=SingleRowPredictor.create(booster, len(FEATURE_NAMES)),
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
