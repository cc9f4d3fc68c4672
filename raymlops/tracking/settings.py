"""``tracking:`` in a pipeline config: mirror runs into an MLflow tracking server (optional).

Validated at load like the rest of the config; ``mlflow`` is an optional extra, so a config that
sets ``tracking.mlflow_uri`` without it installed is an error naming that key and the pip command.
"""

from __future__ import annotations

import importlib.util

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["PIP_HINT", "TrackingConfig", "mlflow_installed"]

PIP_HINT = "pip install 'raymlops[mlflow]'"


def mlflow_installed() -> bool:
    try:
        return importlib.util.find_spec("mlflow") is not None
    except (ImportError, ValueError):
        return False


class TrackingConfig(BaseModel):
    """Each Tune trial becomes an MLflow run (params + metrics, nested under one parent run per
    pipeline run that holds the chosen model's holdout metrics, the snapshot id and the raymlops
    model version); with ``register_model`` the champion's stored artifact is logged and
    registered in MLflow's model registry, tagged with its raymlops version."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    mlflow_uri: str = Field(description="MLflow tracking URI: http(s)://host:port, or a local sqlite:/// or file path")
    experiment: str | None = Field(None, min_length=1, description="MLflow experiment; default: the pipeline name")
    register_model: bool = Field(False, description="register the champion in MLflow's model registry")
    registered_model_name: str | None = Field(None, min_length=1, description="default: the pipeline name")
    request_timeout_s: float = Field(10.0, gt=0.0, description="per MLflow request; an unreachable server is "
                                     "reported after this, the run goes on")

    @field_validator("mlflow_uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("expected an MLflow tracking URI (http://127.0.0.1:5000, sqlite:///mlflow.db, ...)")
        if not mlflow_installed():
            raise ValueError(f"expected the mlflow package to be installed for tracking ({PIP_HINT}); it is not")
        return v
