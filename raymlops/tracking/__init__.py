"""Optional experiment tracking: raymlops runs mirrored into MLflow (``tracking:`` in a config).

Below every layer like ``hooks/``; only the pipeline uses it. ``mlflow`` is imported only when a
config turns tracking on (``pip install 'raymlops[mlflow]'``).
"""

from raymlops.tracking.settings import PIP_HINT, TrackingConfig, mlflow_installed

__all__ = ["PIP_HINT", "TrackingConfig", "mlflow_installed"]
