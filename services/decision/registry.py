"""The model registry: bundle versions in one folder, and the CURRENT pointer.

Usage: python -m services.decision.registry list ROOT
       python -m services.decision.registry promote ROOT VERSION

Promoting loads the version first, so a bundle that the service could not serve is never
promoted; then CURRENT is replaced by rename. A service serving ROOT swaps the new bundle
in at its next check (TRUSTFIRST_DECISION_RELOAD_INTERVAL_SECONDS). Promoting an older
version is how a rollback is done.
"""

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from services.decision.artifact import MANIFEST_FILE, point_current
from services.decision.bundle import load_bundle, read_current
from services.decision.catalog import CatalogError
from services.decision.model import ModelLoadError


@dataclass(frozen=True)
class VersionInfo:
    version: str
    created_time: str
    value_model: bool
    current: bool


def list_versions(root: Path) -> list[VersionInfo]:
    """Return the bundle versions in root, oldest first."""
    current = read_current(root)
    versions: list[VersionInfo] = []
    for manifest_path in sorted(root.glob(f"*/{MANIFEST_FILE}")):
        if manifest_path.parent.name.startswith("."):
            continue
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        versions.append(
            VersionInfo(
                version=str(manifest.get("version", manifest_path.parent.name)),
                created_time=str(manifest.get("created_time", "")),
                value_model=bool(manifest.get("value_model")),
                current=manifest_path.parent.name == current,
            )
        )
    return sorted(versions, key=lambda info: info.created_time)


def promote(root: Path, version: str) -> None:
    """Point root's CURRENT at version after checking that the bundle loads.

    Raises ArtifactNotFoundError, ModelLoadError or CatalogError when it does not.
    """
    if "/" in version or version.startswith("."):
        raise ValueError(f"invalid version {version!r}")
    load_bundle(root / version)
    point_current(root, version)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.decision.registry",
        description="List and promote decision bundles.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list the versions in a registry")
    listing.add_argument("root", type=Path)
    promoting = commands.add_parser("promote", help="serve a version")
    promoting.add_argument("root", type=Path)
    promoting.add_argument("version")
    args = parser.parse_args(argv)

    if args.command == "list":
        for info in list_versions(args.root):
            marker = "*" if info.current else " "
            kind = "value model" if info.value_model else "prior scores"
            print(f"{marker} {info.version}  {info.created_time}  {kind}")
        return

    try:
        promote(args.root, args.version)
    except (OSError, ValueError, ModelLoadError, CatalogError) as exc:
        print(f"not promoted: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print(f"promoted {args.version} in {args.root}")


if __name__ == "__main__":
    main()
