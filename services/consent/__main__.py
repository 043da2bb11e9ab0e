"""Entry point of the consent service: ``trustfirst-consent`` or ``python -m services.consent``."""

from services.consent.app import create_service
from services.consent.settings import ConsentSettings
from shared import event_loop
from shared.logs import configure_logging
from shared.settings import load_settings


async def serve(settings: ConsentSettings) -> None:
    """Build the service inside the running loop and serve until SIGTERM or SIGINT."""
    # grpc.aio binds a server to the event loop that is current when it is created,
    # so create_service must run inside event_loop.run, not before it.
    service = create_service(settings)
    await service.run_until_signal()


def main() -> None:
    """Read the settings from the environment, configure logging and serve."""
    settings = load_settings(ConsentSettings)
    configure_logging("consent", settings.log_level, settings.log_format)
    event_loop.run(serve(settings))


if __name__ == "__main__":
    main()
