"""Start the webhooks of a process: the end-of-session hook and the delivery dispatcher."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

from stagecast.core import Core
from stagecast.live.hooks import SessionHooks
from stagecast.stats import StatsSource
from stagecast.webhooks.deliveries import Policy
from stagecast.webhooks.dispatcher import WebhookDispatcher
from stagecast.webhooks.service import on_session_ended


@dataclass
class Webhooks:
    """The webhook components of one process; handlers reach them with ``core.get(Webhooks)``."""

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


async def start(core: Core, stack: AsyncExitStack) -> None:
    """Starter: queue ``stream.ended`` with every session end, and deliver until shutdown."""
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
    core.get(SessionHooks).on_ended.append(on_session_ended)
    core.register(Webhooks(dispatcher))
    await dispatcher.start()
    stack.push_async_callback(dispatcher.stop)
