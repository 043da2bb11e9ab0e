"""Entry point: ``trustfirst-decision`` or ``python -m services.decision``."""

import logging

from services.decision.app import create_service
from services.decision.artifact import ArtifactNotFoundError
from services.decision.catalog import CatalogError
from services.decision.model import ModelLoadError
from services.decision.settings import DecisionSettings
from shared import event_loop
from shared.logs import configure_logging
from shared.settings import load_settings

logger = logging.getLogger(__name__)


async def serve(settings: DecisionSettings) -> None:
    """Build the service inside the running loop, so its gRPC objects use that loop."""
    service = create_service(settings)
    await service.run_until_signal()


def main() -> None:
    settings = load_settings(DecisionSettings)
    configure_logging("decision", settings.log_level, settings.log_format)
    try:
        event_loop.run(serve(settings))
    except (ArtifactNotFoundError, ModelLoadError, CatalogError) as exc:
        logger.error("decision service not started: %s", exc)
        raise SystemExit(f"decision service not started: {exc}") from exc


if __name__ == "__main__":
    main()
