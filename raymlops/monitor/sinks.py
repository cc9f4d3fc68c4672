"""Where alerts go: the log, the audit log (one record per alert), and a webhook.

Sinks never raise: a sink that fails is reported in the returned list of problems, so a broken
webhook cannot stop the monitor.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from pathlib import Path

from raymlops import audit
from raymlops.config import MonitorAlertsConfig
from raymlops.hooks import emit
from raymlops.monitor.alerts import Alert
from raymlops.store.home import Store

__all__ = ["AUDIT_ACTION", "send_alerts"]

AUDIT_ACTION = "alert."  # + the alert kind: alert.feature_drift, alert.slo_burn …
log = logging.getLogger("raymlops.monitor")


def send_alerts(alerts: list[Alert], cfg: MonitorAlertsConfig, model: str, home: str | Path | None) -> list[str]:
    """Send ``alerts`` to every configured sink; returns the problems met (empty when all worked)."""
    problems: list[str] = []
    if not alerts:
        return problems
    if cfg.log:
        for a in alerts:
            log.warning("monitor %s alert [%s] %s", model, a.kind, a.message)
    if cfg.audit and home is not None:
        try:
            store = Store.open(home)
            with store.metadata.transaction() as conn:
                for a in alerts:
                    audit.append(conn, AUDIT_ACTION + a.kind, {"deployment": model, "alert": a.key}, a.message,
                                 {"alert": a.to_dict()})
        except Exception as exc:  # noqa: BLE001  # a sink must not stop the monitor
            problems.append(f"audit: {type(exc).__name__}: {exc}")
    if home is not None:  # signed webhooks of the home (raymlops.hooks): queued, never waited on
        for a in alerts:
            emit(home, "monitor.alert", {"deployment": model, "alert": a.to_dict()})
    if cfg.webhook_url:
        body = json.dumps({"model": model, "alerts": [a.to_dict() for a in alerts]}, default=str).encode()
        req = urllib.request.Request(cfg.webhook_url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=cfg.timeout_s) as resp:  # noqa: S310  # configured http(s)
                resp.read()
        except Exception as exc:  # noqa: BLE001
            problems.append(f"webhook {cfg.webhook_url}: {type(exc).__name__}: {exc}")
    for p in problems:
        log.error("monitor %s: alert sink failed: %s", model, p)
    return problems
