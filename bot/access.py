"""Who may ask kpibot what: `KPIBOT_ALLOWED_USERS` for KPI answers, `KPIBOT_ADMINS` for management.

A list holds Slack user ids and emails. An email is matched through the user's Slack profile, looked
up only when a list names emails (the lookup is the caller's: `email_of(user_id)`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

EmailOf = Callable[[str], str | None]


class NotAllowed(Exception):
    """The user may not do this; `reason` says why and whom to ask, in the user's language."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Access:
    """The allowed users (empty: everyone) and the admins, as user ids and lower-case emails."""

    allowed: frozenset[str] = frozenset()
    admins: frozenset[str] = frozenset()

    def is_admin(self, user_id: str, email_of: EmailOf) -> bool:
        """Return whether the user is one of the admins."""
        return _listed(self.admins, user_id, email_of)

    def check_ask(self, user_id: str, email_of: EmailOf, *, locale: str) -> None:
        """Raise NotAllowed unless the user may ask for KPIs."""
        if not self.allowed or _listed(self.allowed | self.admins, user_id, email_of):
            return
        raise NotAllowed(
            "kpibot n'est ouvert ici qu'à une liste de personnes (KPIBOT_ALLOWED_USERS) et vous "
            f"n'y êtes pas. Demandez à {self._whom(locale)} de vous ajouter."
            if locale.startswith("fr")
            else "kpibot answers only a list of people here (KPIBOT_ALLOWED_USERS), and you are "
            f"not on it. Ask {self._whom(locale)} to add you."
        )

    def check_admin(self, user_id: str, email_of: EmailOf, *, action: str, locale: str) -> None:
        """Raise NotAllowed unless the user is an admin; `action` names what was refused."""
        if self.is_admin(user_id, email_of):
            return
        raise NotAllowed(
            f"Seuls les administrateurs de kpibot (KPIBOT_ADMINS) peuvent {action}. "
            f"Demandez à {self._whom(locale)}."
            if locale.startswith("fr")
            else f"Only kpibot's admins (KPIBOT_ADMINS) can {action}. Ask {self._whom(locale)}."
        )

    def _whom(self, locale: str) -> str:
        ids = sorted(user for user in self.admins if "@" not in user)[:3]
        if ids:
            return ", ".join(f"<@{user}>" for user in ids)
        if self.admins:
            return ", ".join(sorted(self.admins)[:3])
        french = locale.startswith("fr")
        return "la personne qui administre kpibot" if french else "whoever runs kpibot"


def _listed(users: frozenset[str], user_id: str, email_of: EmailOf) -> bool:
    if user_id.upper() in users:
        return True
    if not any("@" in user for user in users):
        return False
    email = email_of(user_id)
    return email is not None and email.lower() in users
