"""Signed webhooks: raymlops events POSTed as JSON to receivers, from a background queue.

Below every layer (like ``store/``): the registry, serving, the monitor and the retrain loop call
:func:`emit`, which never blocks on a receiver and never raises. Subscriptions come from
``webhooks:`` in a pipeline config (stored in the home when the pipeline runs) and from
``raymlops webhooks add``; every delivery is recorded in ``<home>/webhooks.db``
(:func:`list_deliveries`). Receivers check :data:`SIGNATURE_HEADER` with :func:`verify_signature`.
"""

from raymlops.hooks.dispatch import Dispatcher, default_dispatcher, emit, sync_pipeline_webhooks
from raymlops.hooks.events import (
    EVENT_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPES,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Event,
    sign,
    verify_signature,
)
from raymlops.hooks.records import Subscription, WebhookDB, list_deliveries
from raymlops.hooks.settings import WebhookConfig

__all__ = [
    "EVENT_HEADER", "EVENT_ID_HEADER", "EVENT_TYPES", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "Dispatcher", "Event",
    "Subscription", "WebhookConfig", "WebhookDB", "default_dispatcher", "emit", "list_deliveries", "sign",
    "sync_pipeline_webhooks", "verify_signature",
]
