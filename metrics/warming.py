"""Build what questions read from memory, ahead of them: the server runs `warm` in the background.

Four kept copies, each tied to the data it is computed from (see `storage.revisions`):

- `metrics.ledger`: MRR movements and stocks (`STOCKS` token), built when the token changes;
- `metrics.responses`: each account's survey answers (`SURVEYS` token), the same way;
- `metrics.invoices`: every paid invoice summed per day (`INVOICES` token), the same way;
- `metrics.usage_days`: each account's usage days (`USAGE`), built after a bulk change and
  otherwise refreshed for just the accounts marked since; a question finding none reads SQL, so
  only this round builds it;

then the health of each account on the days health was recently asked (`metrics.health.warm`),
which any of the three families changing makes stale.
"""

from __future__ import annotations

from metrics import health, invoices, ledger
from metrics.context import MetricContext
from metrics.responses import kept_responses
from metrics.usage_days import kept_usage


def warm(ctx: MetricContext) -> bool:
    """Bring every kept copy to the current data; True when the movements had to be rebuilt."""
    rebuilt = ledger.warm(ctx)
    invoices.kept_days(ctx)
    kept_responses(ctx)
    kept_usage(ctx, build=True)
    health.warm(ctx)
    return rebuilt
