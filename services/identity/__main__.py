"""Entry point ``trustfirst-identity``: serves the identity service until SIGTERM."""

import logging

from services.identity.app import create_service
from services.identity.hashing import HashKeyError
from services.identity.rules import RulesError
from services.identity.settings import IdentitySettings
from shared import event_loop
from shared.logs import configure_logging
from shared.settings import load_settings

logger = logging.getLogger(__name__)


async def _serve(settings: IdentitySettings) -> None:
    service = create_service(settings)
    await service.run_until_signal()


def main() -> None:
    """Read settings from the environment, then serve until SIGTERM or SIGINT."""
    settings = load_settings(IdentitySettings)
    configure_logging("identity", settings.log_level, settings.log_format)
    try:
        event_loop.run(_serve(settings))
    except (HashKeyError, RulesError) as error:
        logger.error("identity service not started: %s", error)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
