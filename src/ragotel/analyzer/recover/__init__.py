"""Recovering: recovery actions bound to alerts, their limits and their audit trail."""
