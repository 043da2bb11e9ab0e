"""Entry point of the consent service: ``trustfirst-consent`` or ``python -m services.consent``."""

import asyncio

from services.consent.app import create_service
from services.consent.settings import ConsentSettings
from shared.logs import configure_logging


async def serve(settings: ConsentSettings) -> None:
    """Build the service inside the running loop and serve until SIGTERM or SIGINT."""
    # grpc.aio binds a server to the event loop that is current when it is created,
    # so create_service must run inside asyncio.run, not before it.
    service = create_service(settings)
    await service.run_until_signal()


def main() -> None:
    """Read the settings from the environment, configure logging and serve."""
    settings = ConsentSettings()
    configure_logging("consent", settings.log_level, settings.log_format)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
