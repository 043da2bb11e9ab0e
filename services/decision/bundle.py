"""Model bundles: the repeat-purchase model, the value model, the catalog and its rules,
served together under one version, and their hot reload.

A bundle is an artifact folder (see artifact.py) whose manifest names its files:
``model.txt`` always, ``catalog.toml`` (actions, caps and policy rules) and, once trained
from decision logs, ``value_model.txt`` with the action codes in
``manifest["value_model"]``. A folder without ``catalog.toml`` (an artifact from an
older version) is served with the fallback catalog.

The service keeps one Bundle reference. BundleWatcher polls the registry's CURRENT file
and, when it names another version, loads that bundle off the event loop and swaps the
reference in one assignment. A Decide reads the reference once, so it uses one bundle
from start to finish.
"""

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.decision.artifact import (
    CURRENT_FILE,
    MANIFEST_FILE,
    resolve_artifact_dir,
    sha256_file,
)
from services.decision.catalog import Catalog, CatalogError, load_catalog
from services.decision.model import ModelLoadError, RepeatPurchaseModel, load_model
from services.decision.value_model import (
    VALUE_MODEL_FILE,
    ValueModel,
    load_value_model,
)

logger = logging.getLogger(__name__)

CATALOG_FILE = "catalog.toml"


@dataclass(frozen=True)
class Bundle:
    """Everything one decision is made with, under one version."""

    version: str
    path: Path
    model: RepeatPurchaseModel
    catalog: Catalog
    value_model: ValueModel | None
    manifest: dict[str, Any]

    @property
    def horizon_days(self) -> int:
        """Window, in days, of the margins the value model predicts."""
        value = self.manifest.get("value_model") or {}
        return int(value.get("horizon_days", self.model.horizon_days))


def load_bundle(path: Path, fallback_catalog: Path | None = None) -> Bundle:
    """Load the bundle at path (a version folder, or a root with a CURRENT file).

    fallback_catalog (None for the packaged catalog) serves a folder without
    catalog.toml. Raises ArtifactNotFoundError, ModelLoadError or CatalogError.
    """
    folder = resolve_artifact_dir(path)
    model = load_model(folder)
    manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))

    catalog_file = folder / CATALOG_FILE
    if catalog_file.is_file():
        catalog = load_catalog(catalog_file)
    else:
        catalog = load_catalog(fallback_catalog)

    value_model = None
    description = manifest.get("value_model")
    if description:
        value_model = _load_value_model(folder, description)

    logger.info(
        "bundle %s loaded: catalog %s, %s",
        model.version,
        catalog.version,
        "value model" if value_model is not None else "prior scores",
    )
    return Bundle(model.version, folder, model, catalog, value_model, manifest)


def _load_value_model(folder: Path, description: dict[str, Any]) -> ValueModel:
    path = folder / str(description.get("file", VALUE_MODEL_FILE))
    if not path.is_file():
        raise ModelLoadError(f"{folder}: value model file {path.name} is missing")
    expected = description.get("sha256")
    if expected is not None and sha256_file(path) != expected:
        raise ModelLoadError(f"{path}: SHA-256 differs from the manifest's")
    codes = description.get("action_codes")
    if not isinstance(codes, dict):
        raise ModelLoadError(
            f"{folder}: the manifest's value_model has no action_codes"
        )
    return load_value_model(path, codes)


def read_current(root: Path) -> str | None:
    """Return the version that root's CURRENT file names, or None without one."""
    try:
        return (root / CURRENT_FILE).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


class BundleWatcher:
    """Polls a registry's CURRENT file and swaps in each newly promoted bundle."""

    def __init__(
        self,
        root: Path,
        served_version: str,
        interval_seconds: float,
        swap: Callable[[Bundle], None],
        fallback_catalog: Path | None = None,
    ) -> None:
        self._root = root
        self._served = served_version
        self._interval_seconds = interval_seconds
        self._swap = swap
        self._fallback_catalog = fallback_catalog
        self._failed: str | None = None

    async def run(self) -> None:
        """Check every interval until cancelled."""
        while True:
            await asyncio.sleep(self._interval_seconds)
            await self.check()

    async def check(self) -> bool:
        """Load and swap in the version CURRENT names, if new; return whether swapped.

        A version that fails to load is logged once and skipped until CURRENT names
        another, and the served bundle stays.
        """
        version = await asyncio.to_thread(read_current, self._root)
        if version is None or version in (self._served, self._failed):
            return False
        try:
            bundle = await asyncio.to_thread(
                load_bundle, self._root / version, self._fallback_catalog
            )
        except (OSError, ValueError, ModelLoadError, CatalogError) as exc:
            self._failed = version
            logger.error(
                "bundle %s not loaded, still serving %s: %s", version, self._served, exc
            )
            return False

        self._swap(bundle)
        logger.info("bundle %s swapped in for %s", bundle.version, self._served)
        self._served = bundle.version
        self._failed = None
        return True
