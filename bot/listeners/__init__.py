"""Bolt listeners, one module per surface; each module has `register(app, services)`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.listeners import home, kpi

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.slack_app import BotServices


def register_all(app: App, services: BotServices) -> None:
    """Register every listener of kpibot on `app`."""
    kpi.register(app, services)
    home.register(app, services)
