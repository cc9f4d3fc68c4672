"""What every step of a run reads and writes, passed to it explicitly: :class:`RunContext`.

A context holds the config, the store, the clock, the step cache and the run's recorder, the
run's id and reason, the record of the step that is running (``ctx.step``: its detail, rows,
bytes and outputs, saved in the run record) and the run's summary (``ctx.result``). Ray is
joined lazily: a step that needs it calls :meth:`RunContext.connect` (a run whose steps all
come from the cache never starts Ray). The snapshot's rows are read at most once per run
(:meth:`RunContext.rows`).

Steps run alone from Python with a context of their own::

    ctx = RunContext.open(load_config("configs/quickstart.yaml"), home="/tmp/h")
    snap = SnapshotStep().run(ctx, SnapshotIn(dataset))
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raymlops.config import PipelineConfig
from raymlops.exceptions import ValidationError
from raymlops.pipeline.cache import StepCache
from raymlops.pipeline.history import RunRecorder, new_run_id, submission_id, who
from raymlops.pipeline.results import RunResult, StepResult
from raymlops.pipeline.steplog import stamp
from raymlops.ray_session import ensure_ray
from raymlops.registry.lineage import code_version
from raymlops.serve.throughput import fast_ingress_for_private_ray
from raymlops.store.home import Store

__all__ = ["RunContext", "SnapshotRows", "where"]

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def where(persistent: bool) -> dict[str, Any]:
    """The Ray cluster the run uses, and the job it belongs to (``ray job submit`` included)."""
    import ray

    ctx = ray.get_runtime_context()
    out: dict[str, Any] = {"host": socket.gethostname(), "ray_version": ray.__version__,
                           "cluster": "existing (RAY_ADDRESS)" if persistent else "private local Ray",
                           "ray_address_env": os.environ.get("RAY_ADDRESS"), "namespace": ctx.namespace}
    for key, get in (("ray_address", lambda: ctx.gcs_address), ("job_id", ctx.get_job_id),
                     ("node_id", ctx.get_node_id)):
        try:
            out[key] = get()
        except Exception:  # older Ray, or not available in this process
            out[key] = None
    submission = submission_id(os.environ)
    out["ray_job_id_env"] = os.environ.get("RAY_JOB_ID")
    out["submission_id"] = submission
    out["under_job_submit"] = submission is not None
    return out


def check_slice_columns(slices: list[str], names: list[str]) -> None:
    """A ValidationError naming the first ``gate.slices`` column the data (``names``) lacks."""
    missing = [c for c in slices if c not in names]
    if missing:
        raise ValidationError(f"gate.slices: the data has no column {missing[0]!r} (columns: {', '.join(names)})")


class SnapshotRows:
    """One snapshot's rows, read once: the Arrow table, the train/holdout split of the features
    (``(X_train, y_train, X_holdout, y_holdout)``) and the holdout rows of other columns.
    ``load``: reads the table (default: the snapshot ``snapshot_id`` of ``store``)."""

    def __init__(self, store: Store, snapshot_id: str, config: PipelineConfig,
                 load: Callable[[], Any] | None = None) -> None:
        self.store, self.snapshot_id, self.config = store, snapshot_id, config
        self._load = load
        self._table: Any = None
        self._arrays: dict[tuple[str, ...], Arrays] = {}

    @property
    def table(self) -> Any:
        if self._table is None:
            if self._load is not None:
                self._table = self._load()
            else:
                # pyarrow.parquet: only when the step runs (`raymlops runs` reads run history from here)
                from raymlops.data.snapshot_read import read_snapshot

                _, self._table = read_snapshot(self.store, self.snapshot_id)
        return self._table

    def split(self, features: list[str]) -> Arrays:
        key = tuple(features)
        if key not in self._arrays:
            # scikit-learn + scipy.stats (~1 s): only when the step runs (`raymlops runs` imports this package)
            from raymlops.train.prepare import split_table

            self._arrays[key] = split_table(self.table, features, self.config)
        return self._arrays[key]

    def holdout_columns(self, columns: list[str]) -> dict[str, np.ndarray]:
        """The holdout rows of each ``gate.slices`` column (a feature or any other column)."""
        if not columns:
            return {}
        # scikit-learn + scipy.stats (~1 s): only when the step runs (`raymlops runs` imports this package)
        from raymlops.data.schema import column_array
        from raymlops.train.prepare import holdout_of

        table = self.table
        check_slice_columns(columns, table.column_names)
        holdout = holdout_of(table, self.config)
        return {c: column_array(table.column(c))[holdout] for c in columns}


def client_rows(columns: Mapping[str, np.ndarray], start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
    """Rows ``start:stop`` of ``columns`` (:meth:`SnapshotRows.holdout_columns`) as a client sends
    them (``{"instances": [...]}``): numbers as floats, strings as they are, a missing value as None
    (JSON null). Built a batch at a time, so a large holdout is never held as dicts whole."""
    out: list[dict[str, Any]] = []
    for name, values in columns.items():
        part = values[start:stop].tolist()
        if not out:
            out = [{} for _ in part]
        for row, v in zip(out, part, strict=True):
            row[name] = v if isinstance(v, str) or v is None else (None if v != v else float(v))
    return out


def stderr_line(line: str) -> None:
    """A progress line on stderr. Once its reader has left (``raymlops run ... 2>&1 | head``), stderr
    goes to /dev/null and the run goes on: the closed pipe failed the step that printed next."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError):  # ValueError: stderr closed
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())


@dataclass
class RunContext:
    """One run's surroundings (see the module docstring). ``reason``: why the run was started (the
    audit records' *why*; default ``pipeline NAME run ID``). ``alias``: the alias a model that
    passes the gate takes (None registers it without one). ``keep_serving``: leave the deployment
    up (None: only on an existing cluster). ``ray_progress``: Ray Data's and Tune's progress."""

    config: PipelineConfig
    store: Store
    clock: Callable[[], float] = time.time
    progress: Callable[[str], None] = stderr_line
    use_cache: bool = True
    reason: str = ""
    alias: str | None = "champion"
    keep_serving: bool | None = None
    ray_progress: bool = False
    run_id: str = ""
    code: dict[str, Any] | None = None
    who: dict[str, Any] = field(default_factory=who)
    where: dict[str, Any] = field(default_factory=dict)
    persistent: bool = False
    connected: bool = False
    serve_started: bool = False  # the deploy step started Serve (not running before): the run stops it
    on_connect: Callable[[], None] | None = None
    step: StepResult = field(default_factory=lambda: StepResult("", "running", 0.0))
    previous: StepResult | None = None  # the record of the step that finished last
    result: RunResult = field(init=False)
    cache: StepCache = field(init=False)
    recorder: RunRecorder = field(init=False)
    _rows: dict[str, SnapshotRows] = field(default_factory=dict, repr=False)
    _started: float | None = field(default=None, repr=False)  # a context of open(): its run is recorded here

    def __post_init__(self) -> None:
        self.run_id = self.run_id or new_run_id(self.clock)
        self.reason = self.reason or f"pipeline {self.config.name} run {self.run_id}"
        self.result = RunResult(run_id=self.run_id, pipeline=self.config.name)
        self.cache = StepCache(self.store.metadata, self.clock)
        self.recorder = RunRecorder(self.store.metadata, self.run_id, self.clock)

    @classmethod
    def open(cls, config: PipelineConfig, home: str | Path | None = None, **options: Any) -> RunContext:
        """A context over the store at ``home`` (default: ``RAYMLOPS_HOME``), for running steps alone.

        It is a run of its own in the home's record (``raymlops runs show ID``: who, config, code),
        as the audit records its steps write name it: ``running`` until :meth:`close` (or the end of
        a ``with`` block) says how it ended, ``abandoned`` once its process is gone without that."""
        options.setdefault("code", code_version())
        ctx = cls(config, Store.open(home), **options)
        ctx._started = ctx.clock()
        ctx._save_standalone("running")
        return ctx

    def _save_standalone(self, status: str) -> None:
        assert self._started is not None
        self.result.status = status
        record = self.result.to_dict() | {
            "who": self.who, "where": self.where, "config": self.config.model_dump(mode="json"),
            "config_hash": self.config.config_hash(), "code": self.code, "use_cache": self.use_cache,
            "error": None, "standalone": "steps run alone from Python (RunContext.open)"}
        self.recorder.save_run(pipeline=self.config.name, status=status, config_hash=self.config.config_hash(),
                               started_at=self._started, ended_at=None if status == "running" else self.clock(),
                               record=record)

    def close(self, status: str = "succeeded") -> None:
        """Record how a context from :meth:`open` ended: ``succeeded``, ``failed`` or ``interrupted``."""
        if status not in ("succeeded", "failed", "interrupted"):
            raise ValueError(f"status: expected succeeded, failed or interrupted, found {status!r}")
        if self._started is not None:
            self.result.seconds = self.clock() - self._started
            self._save_standalone(status)

    def __enter__(self) -> RunContext:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self.close("succeeded" if kind is None else "interrupted" if issubclass(kind, KeyboardInterrupt)
                   else "failed")

    def say(self, line: str) -> None:
        """A progress line, kept in the running step's log too."""
        self.progress(line)
        self.step.log.add(stamp(line, self.clock()))

    def rows(self, snapshot_id: str) -> SnapshotRows:
        if snapshot_id not in self._rows:
            self._rows[snapshot_id] = SnapshotRows(self.store, snapshot_id, self.config)
        return self._rows[snapshot_id]

    def connect(self) -> None:
        """Join Ray (an existing cluster through ``RAY_ADDRESS``, else a private local one) once."""
        if self.connected:
            return

        serve = self.config.serve
        if serve.enabled:

            # a private Ray started next runs Serve's HAProxy ingress (loopback only, quick to stop),
            # unless serve.high_throughput is false
            fast_ingress_for_private_ray(serve.high_throughput)
        persistent = ensure_ray()
        if self.ray_progress:
            from ray.data import DataContext

            DataContext.get_current().enable_progress_bars = True
            logging.getLogger("ray.data").setLevel(logging.INFO)  # off a terminal, Ray Data logs its progress
        if self.keep_serving is None:
            self.keep_serving = persistent
        self.persistent = persistent
        self.where = where(persistent)
        self.connected = True
        if self.on_connect is not None:
            self.on_connect()

    def ray(self) -> Any:
        """The ``ray`` module, connected."""
        import ray

        self.connect()
        return ray
