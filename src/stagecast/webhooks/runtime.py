"""Start the webhooks of a process: the end-of-session hook and the delivery dispatcher."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

from stagecast.core import Core
from stagecast.live.runtime import Live
from stagecast.stats import StatsSource
from stagecast.webhooks.deliveries import Policy
from stagecast.webhooks.dispatcher import WebhookDispatcher
from stagecast.webhooks.service import on_session_ended


@dataclass
class Webhooks:
    """The webhook components of one process."""

    dispatcher: WebhookDispatcher

    def sources(self) -> list[StatsSource]:
        """Return the counters the webhooks export on ``/metrics``."""
        dispatcher = self.dispatcher

        def read() -> dict[str, float]:
            return {
                "attempts": dispatcher.attempts,
                "delivered": dispatcher.delivered,
                "failed": dispatcher.failed,
            }

        return [StatsSource("webhooks", read)]


async def start_webhooks(core: Core, live: Live, stack: AsyncExitStack) -> Webhooks:
    """Queue ``stream.ended`` with every session end, and deliver until shutdown.

    Call it before ``start_live``, like the VOD worker (see ``stagecast.runtime``).
    """
    settings = core.settings
    dispatcher = WebhookDispatcher(
        core.db,
        core.bus,
        Policy(
            attempts=settings.webhook_max_attempts,
            retry_base=settings.webhook_retry_base_seconds,
            retry_cap=settings.webhook_retry_cap_seconds,
            timeout=settings.webhook_timeout_seconds,
            allow_private=settings.webhook_allow_private,
        ),
        poll=settings.webhook_poll_seconds,
    )
    live.hooks.on_ended.append(on_session_ended)
    await dispatcher.start()
    stack.push_async_callback(dispatcher.stop)
    return Webhooks(dispatcher)
