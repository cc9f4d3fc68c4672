"""``monitor:``: drift windows and tests, performance, SLOs, differential checks and alerts."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from raymlops.config.base import Strict


class BurnWindowConfig(Strict):
    """One multi-window burn-rate alert (Google SRE workbook): both windows must burn faster."""

    long_s: float = Field(gt=0.0)
    short_s: float = Field(gt=0.0)
    burn_rate: float = Field(gt=0.0, description="error-budget consumption rate, 1 = exactly on budget")

    @model_validator(mode="after")
    def _short_within_long(self) -> BurnWindowConfig:
        if self.short_s > self.long_s:
            raise ValueError(f"expected short_s <= long_s, found {self.short_s} > {self.long_s}")
        return self


def _default_burn_windows() -> list[BurnWindowConfig]:
    return [BurnWindowConfig(long_s=3600.0, short_s=300.0, burn_rate=14.4),
            BurnWindowConfig(long_s=21600.0, short_s=1800.0, burn_rate=6.0)]


class MonitorSLOConfig(Strict):
    """Service-level objectives of the served model, checked by the monitor."""

    availability_target: float = Field(0.999, gt=0.0, lt=1.0, description="share of requests without a 5xx")
    latency_ms: float | None = Field(None, gt=0.0, description="latency objective: requests faster than this")
    latency_target: float = Field(0.99, gt=0.0, lt=1.0, description="share of requests under latency_ms")
    burn_windows: list[BurnWindowConfig] = Field(default_factory=_default_burn_windows)
    bucket_s: float = Field(60.0, gt=0.0, description="time resolution of the SLO counters")
    min_requests: int = Field(10, ge=1, description="fewer requests in a window: no burn alert")


class CalibrationConfig(Strict):
    """Isotonic calibration of the positive-class score (:class:`raymlops.stats.cbpe.Calibration`),
    with the holdout's realised metrics it was fitted beside."""

    format: str = "raymlops.calibration/1"
    method: Literal["isotonic", "identity"] = "isotonic"
    x: list[float] = Field(min_length=1)
    y: list[float] = Field(min_length=1)
    rows: int = Field(0, ge=0)
    positive_label: float | str | None = None
    reference: dict[str, float] = Field(default_factory=dict, description="holdout accuracy / roc_auc")

    @model_validator(mode="after")
    def _knots(self) -> CalibrationConfig:
        if len(self.x) != len(self.y):
            raise ValueError(f"expected as many x as y knots, found {len(self.x)} and {len(self.y)}")
        return self


class MonitorPerformanceConfig(Strict):
    """Model quality from ground-truth labels posted later by request id."""

    task: Literal["classification", "regression"] = "classification"
    positive_label: float | str = Field(1.0, description="a binary classifier's positive class; when left out, "
                                         "the deployed model's second class (as roc_auc takes it)")
    label_store_size: int = Field(100_000, ge=1, description="predictions kept waiting for their label")
    window_labels: int = Field(1000, ge=1, description="labelled rows per performance window")
    baseline_labels: int = Field(500, ge=1, description="the first labelled rows set the baseline")
    min_labels: int = Field(50, ge=1, description="fewer labelled rows in a window or slice: no verdict")
    max_accuracy_drop: float = Field(0.05, gt=0.0, le=1.0)
    max_auc_drop: float = Field(0.05, gt=0.0, le=1.0)
    max_mae_increase: float = Field(0.2, gt=0.0, description="relative to the baseline MAE")
    early_label_ttl_s: float = Field(
        300.0, gt=0.0, description="a label whose prediction has not reached the monitor yet waits this long for it, "
        "then counts as expired")
    early_label_store_size: int = Field(
        100_000, ge=1, description="labels waiting for their prediction; beyond it the oldest is expired")
    # -- concept drift: change detectors on the per-row error of labelled rows (raymlops.stats.change) --
    change_detectors: list[Literal["adwin", "page_hinkley"]] = Field(
        default_factory=lambda: ["adwin", "page_hinkley"],  # type: ignore[arg-type]
        description="detectors on the error stream of labelled rows (1 - correct; regression: e / (e + "
        "baseline MAE) of the absolute error e), overall and per slice; [] is off")
    adwin_delta: float = Field(0.002, gt=0.0, lt=1.0, description="ADWIN confidence: smaller, fewer false alarms")
    page_hinkley_threshold: float = Field(50.0, gt=0.0, description="Page-Hinkley alarm threshold (lambda)")
    page_hinkley_delta: float = Field(0.005, ge=0.0, description="Page-Hinkley: change of the error tolerated")
    change_min_labels: int = Field(30, ge=1, description="labels a detector sees before it may alarm")
    # -- performance estimated before labels (CBPE, raymlops.stats.cbpe) --
    estimate: bool = Field(True, description="estimate accuracy and ROC AUC of served rows from their calibrated "
                           "probabilities (binary classifiers whose scores reach the monitor)")
    estimated_window_rows: int = Field(1000, ge=1, description="served rows per estimation window")
    max_estimated_accuracy_drop: float | None = Field(
        None, gt=0.0, le=1.0, description="estimated_performance alert below the holdout accuracy minus this "
        "(default: max_accuracy_drop)")
    calibration: CalibrationConfig | None = Field(
        None, description="the served model's probability calibration, fitted on its holdout (set from the "
        "registered model's lineage when the pipeline deploys it)")


class MonitorDifferentialConfig(Strict):
    """Champion vs challenger on the same requests (shadow or canary)."""

    champion: str | None = Field(None, description="champion version; default: the first version seen")
    min_agreement: float = Field(0.9, ge=0.0, le=1.0)
    max_prediction_distance: float = Field(0.1, gt=0.0, le=1.0, description="Jensen-Shannon distance")
    max_slice_agreement_gap: float = Field(0.1, gt=0.0, le=1.0)
    min_pairs: int = Field(100, ge=1)
    pending_size: int = Field(10_000, ge=1, description="requests kept waiting for the other version")
    tolerance: float | None = Field(
        None, gt=0.0, description="a regression's two predictions agree when they differ by at most this much, "
        "and its prediction distributions are compared on bins this wide (default: half the champion's "
        "holdout MAE, set by the deploy step); classifiers: unused (labels agree when equal)")


class MonitorAlertsConfig(Strict):
    log: bool = True
    audit: bool = True
    webhook_url: str | None = Field(None, description="POSTed a JSON alert; http(s)")
    cooldown_s: float = Field(300.0, ge=0.0, description="the same alert is not re-sent within this time")
    timeout_s: float = Field(2.0, gt=0.0)

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("expected an http:// or https:// URL")
        return v


class MonitorConfig(Strict):
    enabled: bool = True
    n_bins: int = Field(10, ge=2, le=100)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    correction: Literal["bonferroni", "holm", "bh"] = "bonferroni"
    dataset_rule: Literal["any", "share"] = Field(
        "any", description="dataset drift: 'any' feature drifted after the correction (family-wise), or 'share': "
        "at least dataset_drift_share of the features drifted at the uncorrected level (see raymlops.stats.verdict)")
    dataset_drift_share: float = Field(0.5, gt=0.0, le=1.0, description="dataset_rule 'share': at least this share")
    discrete_max_values: int = Field(
        50, ge=0, description="a numeric column of integers with at most this many distinct values is tested on its "
        "exact support (chi-square), not with KS: offline on both datasets' values, live on the reference's (a "
        "bucket per value); 0: never")
    p_values: Literal["randomised", "conservative"] = Field(
        "randomised", description="offline exact tests (KS up to 10,000 values a side, chi-square on a sparse table): "
        "'randomised' reports P(T > t) + U P(T = t), U fixed by the data, exactly uniform under no drift (size "
        "alpha); 'conservative': KS's P(T >= t) and chi-square's asymptotic p-value, as scipy's ks_2samp and "
        "chi2_contingency report them (and the live monitor); see raymlops.stats.randomised")
    sample_rate: float = Field(1.0, ge=0.0, le=1.0, description="share of served requests handed to the monitor")
    # -- streaming drift (raymlops.monitor) --
    fine_bins: int = Field(100, ge=2, le=1000, description="quantile bins for KS/Wasserstein; >= n_bins")
    categorical: list[str] = Field(default_factory=list, description="features compared as categories")
    max_categories: int = Field(50, ge=1)
    slice_columns: list[str] = Field(default_factory=list)
    max_slices: int = Field(20, ge=1, description="most frequent reference slices; the rest is 'other'")
    small_window_rows: int = Field(1000, ge=1, description="while the window or the reference has at most "
                                   "this many rows: KS / chi-square p-values; distances above")
    numeric_test: Literal["auto", "ks", "wasserstein", "psi", "js", "chi2"] = "auto"
    categorical_test: Literal["auto", "chi2", "js", "psi"] = "auto"
    wasserstein_threshold: float = Field(0.1, gt=0.0)
    js_threshold: float = Field(0.1, gt=0.0, le=1.0)
    psi_threshold: float = Field(0.1, gt=0.0)
    psi_bands: list[float] = Field(default_factory=lambda: [0.1, 0.2], min_length=2, max_length=2)
    min_rows: int = Field(30, ge=0, description="fewer rows in a window or slice: scores only, no verdict")
    window_rows: int | None = Field(1000, ge=1, description="tumbling window length in rows")
    window_s: float | None = Field(None, gt=0.0, description="tumbling window length in seconds")
    long_term_windows: int = Field(24, ge=1, description="the rolling long-term window spans this many windows")
    history: int = Field(50, ge=1, description="closed windows kept for status and metrics")
    max_missing_rate_increase: float = Field(0.05, gt=0.0, le=1.0)
    max_out_of_range_rate: float = Field(0.05, gt=0.0, le=1.0)
    max_unseen_rate: float = Field(0.01, gt=0.0, le=1.0)
    max_positive_rate_gap: float | None = Field(None, gt=0.0, le=1.0, description="bias: across slices")
    metrics_port: int | None = Field(None, ge=1, le=65535, description="Prometheus /metrics on 127.0.0.1")
    checkpoint_s: float = Field(30.0, gt=0.0, description="state checkpointed to the store this often")
    max_restarts: int = Field(3, ge=0)
    shards: int = Field(
        1, ge=1, le=64, description="monitor actors per route; requests (and their labels) split by request id, "
        "each shard closes its own windows of window_rows rows, status and summary merge them")
    performance: MonitorPerformanceConfig = Field(default_factory=MonitorPerformanceConfig)
    differential: MonitorDifferentialConfig = Field(default_factory=MonitorDifferentialConfig)
    slo: MonitorSLOConfig = Field(default_factory=MonitorSLOConfig)
    alerts: MonitorAlertsConfig = Field(default_factory=MonitorAlertsConfig)

    @model_validator(mode="after")
    def _monitor_consistent(self) -> MonitorConfig:
        if self.window_rows is None and self.window_s is None:
            raise ValueError("expected window_rows or window_s (or both), found neither")
        if self.fine_bins < self.n_bins:
            raise ValueError(f"expected fine_bins >= n_bins ({self.n_bins}), found {self.fine_bins}")
        if not 0 < self.psi_bands[0] < self.psi_bands[1]:
            raise ValueError(f"expected psi_bands [low, high] with 0 < low < high, found {self.psi_bands}")
        return self
