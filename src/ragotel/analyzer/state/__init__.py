"""State: the SQLite file of alert episodes, cooldowns, the notification outbox and the recovery audit trail."""

from ragotel.analyzer.state.schema import SCHEMA_VERSION
from ragotel.analyzer.state.store import StateError, StateStore

__all__ = ["SCHEMA_VERSION", "StateError", "StateStore"]
