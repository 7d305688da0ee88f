"""Notifying: notification channels and the outbox that retries their deliveries."""
