"""App Home: the user's own book when they own accounts, the team's headline KPIs otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.home import build_home

if TYPE_CHECKING:
    from slack_bolt import App
    from slack_sdk import WebClient

    from bot.slack_app import BotServices


def register(app: App, services: BotServices) -> None:
    """Register the App Home listener."""

    @app.event("app_home_opened")
    def publish_home(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        user_id = str(event.get("user") or "")
        view = build_home(
            user_id,
            factory=services.factory,
            settings=services.settings,
            access=services.access,
            email_of=services.users.email_of,
            now=services.clock(),
        )
        client.views_publish(user_id=user_id, view=view)
