"""``raymlops monitor check | report | status``.

``check`` compares two whole datasets offline with exact tests (CSV/Parquet files or snapshot
ids; :mod:`raymlops.monitor.offline`; no Ray): exit 0 whether or not there is drift, 2 on bad
input. ``report`` writes the same check (or, with ``--route``, the window of a live monitor
actor) as a self-contained HTML page with histograms. ``status`` asks the live monitor actors of
the cluster named by ``--address`` / ``$RAY_ADDRESS`` for their current window.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any, cast

from raymlops.cli.common import add_command, print_json
from raymlops.exceptions import ConfigError, NotFound, ValidationError
from raymlops.ray_session import NAMESPACE, ensure_ray, join_cluster

_INPUT = "CSV, JSON Lines or Parquet file, a folder of them, or a snapshot id"


def register(sub: Any) -> None:
    mon = add_command(sub, "monitor", help="drift monitoring: offline checks, live monitor status")
    verbs = mon.add_subparsers(dest="verb", metavar="VERB")
    chk = add_command(verbs, "check", help="drift of a current dataset against a reference (offline, no Ray)")
    chk.add_argument("--reference", required=True, metavar="PATH_OR_SNAPSHOT", help=_INPUT)
    chk.add_argument("--current", required=True, metavar="PATH_OR_SNAPSHOT", help=_INPUT)
    chk.add_argument("--config", metavar="FILE", help="pipeline YAML (its monitor: section) or a YAML with monitor:")
    chk.add_argument("--slice", action="append", default=[], metavar="COL", help="slice column (repeatable)")
    chk.add_argument("--column", action="append", default=None, metavar="COL",
                     help="monitor only these columns (repeatable; default: all but the slice columns)")
    chk.add_argument("--json", action="store_true", help="one JSON document on stdout")
    rep = add_command(verbs, "report", help="self-contained HTML drift report with histograms (offline or --route)")
    rep.add_argument("--out", required=True, metavar="FILE.html", help="the HTML file to write")
    rep.add_argument("--reference", metavar="PATH_OR_SNAPSHOT", help=_INPUT + " (offline)")
    rep.add_argument("--current", metavar="PATH_OR_SNAPSHOT", help=_INPUT + " (offline)")
    rep.add_argument("--config", metavar="FILE", help="pipeline YAML (its monitor: section) or a YAML with monitor:")
    rep.add_argument("--slice", action="append", default=[], metavar="COL", help="slice column (repeatable)")
    rep.add_argument("--column", action="append", default=None, metavar="COL",
                     help="monitor only these columns (repeatable; default: all but the slice columns)")
    rep.add_argument("--route", metavar="NAME", help="report the live monitor of this deployment instead (Ray)")
    rep.add_argument("--top", type=int, default=5, metavar="N",
                     help="when no feature drifted, plot the N features with the lowest p-values (default 5)")
    rep.add_argument("--json", action="store_true", help="print a JSON summary of what was written")
    st = add_command(verbs, "status", help="current window of the live monitor actors (needs RAY_ADDRESS)")
    st.add_argument("--address", help="Ray cluster address; default $RAY_ADDRESS")
    st.add_argument("--name", help="deployment (route) name; default: every monitor found")
    st.add_argument("--json", action="store_true", help="one JSON document on stdout")


def _monitor_config(path: str | None) -> Any:
    # pydantic, PyYAML, pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops.config import MonitorConfig

    if path is None:
        return MonitorConfig()
    import yaml
    from pydantic import ValidationError as PydanticValidationError

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if isinstance(data, dict) and "data" in data:
        # pydantic, PyYAML, pyarrow: only when this verb runs, not for `raymlops --help`
        from raymlops.config import load_config

        return load_config(p).monitor
    if not isinstance(data, dict) or not isinstance(data.get("monitor", {}), dict):
        raise ConfigError(f"{p}: expected a mapping with a 'monitor:' section")
    try:
        return MonitorConfig.model_validate(data.get("monitor", {}))
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in ("monitor", *err["loc"]))
        raise ConfigError(f"{p}: {where}: {err['msg']}, found {err.get('input')!r}") from None


def run(args: argparse.Namespace) -> int:
    if args.verb == "check":
        return _check(args)
    if args.verb == "report":
        return _report(args)
    return _status(args)


def _report(args: argparse.Namespace) -> int:
    # pandas, scipy, pydantic: only when this verb runs, not for `raymlops --help`
    from raymlops.monitor.report import check_out, live_model, offline_model, plotted_features, write_report

    offline = args.reference is not None or args.current is not None
    if args.route is not None and (offline or args.slice or args.column or args.config):
        raise ConfigError("monitor report: give either --route (live) or --reference/--current (offline), not both")
    if args.route is None and (args.reference is None or args.current is None):
        raise ConfigError("monitor report: needs --reference and --current (offline), or --route NAME (live)")
    if args.top < 1:
        raise ConfigError(f"monitor report: --top must be >= 1, got {args.top}")
    try:  # before any reading: a wrong --out is said at once
        out = check_out(args.out)
    except ValidationError as exc:
        raise ConfigError(f"monitor report: {exc}") from None
    if args.route is not None:
        model = live_model(_live_status(args.route), args.route)
    else:
        # pandas, scipy, pydantic: only when this verb runs, not for `raymlops --help`
        from raymlops.monitor.offline import check, read_table

        cfg = _monitor_config(args.config)
        home = getattr(args, "home", None)
        ref, ref_desc = read_table(args.reference, home)
        cur, cur_desc = read_table(args.current, home)
        # checked as Arrow (its types say which columns are times, decimals or lists, as monitor check reads
        # them), plotted from pandas: the tested columns only
        result = check(ref, cur, cfg, slice_columns=args.slice, columns=args.column)
        tested = list(result["features"])
        model = offline_model(result, ref_desc, cur_desc, reference_data=ref.select(tested).to_pandas(),
                              current_data=cur.select(tested).to_pandas())
    path = write_report(model, out, args.top)
    plotted = plotted_features(model, args.top)
    if args.json:
        print_json({"out": str(path), "drift": model["drift"], "drifted_features": model["drifted_features"],
                    "plotted": plotted, "slices": list(model["slices"])})
    else:
        print(f"wrote {path}: dataset drift {'YES' if model['drift'] else 'no'}, "
              f"{len(model['drifted_features'])} drifted features, {len(plotted)} plots")
    return 0


def _live_status(route: str) -> dict[str, Any]:
    """``status()`` of the monitor actor of ``route`` (connects to Ray only here)."""
    import ray

    # pandas, scipy, pydantic: only when this verb runs, not for `raymlops --help`
    from raymlops.monitor.names import monitor_name

    if not ray.is_initialized() and not os.environ.get("RAY_ADDRESS"):
        raise ConfigError(f"monitor report --route {route}: needs the cluster that serves it: set RAY_ADDRESS")
    ensure_ray()
    try:
        handle = ray.get_actor(monitor_name(route), namespace=NAMESPACE)
    except ValueError:
        raise NotFound(f"monitor report: --route {route!r}: no monitor actor for it on this Ray cluster "
                              "(is RAY_ADDRESS set to the cluster that serves it?)") from None
    return cast(dict[str, Any], ray.get(handle.status.remote(), timeout=60))


def _keep_freed_memory() -> None:
    """glibc only: keep freed memory in the process rather than hand it back to the system after
    each large array and fault it in again for the next (the check allocates the same few column-
    sized arrays over and over: without this, a tenth of its CPU time is page faults). Up to 1 GiB
    of freed memory stays mapped until the process ends; elsewhere (musl, macOS) nothing happens."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: its largest value on 64-bit glibc
    except (OSError, AttributeError):
        pass


#: local input files of this many bytes together make the check's KS p-values large-sample ones
LARGE_INPUT_BYTES = 4 << 20


def _start_helper_for_large(*refs: str) -> None:
    """For large local files, the process that computes long KS p-value sums
    (:func:`raymlops.stats.ks.start_p_value_helper`), forked now while this process is small."""
    try:
        size = sum(os.path.getsize(r) for r in refs)
    except OSError:  # not local files (s3://, a snapshot id)
        return
    if size >= LARGE_INPUT_BYTES:
        # numpy and the stats package: only for this verb (`raymlops --help` imports this module)
        from raymlops.stats.ks import start_p_value_helper

        start_p_value_helper()


def _check(args: argparse.Namespace) -> int:
    # Arrow in, exact tests out: this path imports neither Ray nor pandas nor the monitor package
    # (a Parquet file's columns are read when the check reaches them, so that reading overlaps testing)
    import gc

    _keep_freed_memory()
    _start_helper_for_large(args.reference, args.current)
    # pyarrow and the exact tests: only for this verb (`raymlops --help` imports this module)
    from raymlops.data.tables import open_table
    from raymlops.stats.offline import check_tables as check

    cfg = _monitor_config(args.config)
    home = getattr(args, "home", None)
    ref, ref_desc = open_table(args.reference, home)
    cur, cur_desc = open_table(args.current, home)
    # The check makes no reference cycles worth collecting, while importing scipy.stats makes tens of
    # thousands of objects that each automatic full collection would walk again.
    gc.disable()
    try:
        result = check(ref, cur, cfg, slice_columns=args.slice, columns=args.column)
    finally:
        gc.enable()
    result["reference"], result["current"] = ref_desc, cur_desc
    if args.json:
        print_json(result)
        return 0
    print(f"reference {ref_desc} ({result['rows']['reference']} rows)   current {cur_desc} "
          f"({result['rows']['current']} rows)   correction {result['correction']}")
    print(f"{'feature':<24} {'kind':<12} {'test':<12} {'statistic':>10} {'p-value':>10} {'adj. p':>10} "
          f"{'PSI':>7}  drift")
    for name, f in result["features"].items():
        print(f"{name:<24} {f['kind']:<12} {f['test']:<12} {_fmt(f['statistic']):>10} {_fmt(f['p_value']):>10} "
              f"{_fmt(f['adjusted_p_value']):>10} {_fmt(f['psi']):>7}  {'YES' if f['drift'] else 'no'}")
    for name, s in result["slices"].items():
        flag = "DRIFT: " + ", ".join(s["drifted_features"]) if s["drift"] else "no drift"
        print(f"slice {name:<30} {s['rows']:>8} rows  {flag}")
    if result.get("slice_note"):
        print(f"note: slices: {result['slice_note']}")
    for name, why in result["not_tested"].items():
        print(f"{name or '(no name)':<24} not tested: {why}")
    for name, findings in result["anomalies"].items():
        print(f"data quality: {name}: {'; '.join(findings)}")
    any_rule = result["dataset_rule"] == "any"
    rule = (f"any feature with {result['correction']}-corrected p < {result['alpha']}" if any_rule
            else f"at least {cfg.dataset_drift_share:.0%} of the features with p < {result['alpha']}, uncorrected")
    distances = sorted({f["test"] for f in result["features"].values()} - {"ks", "chi2"})
    if distances:
        limits = {"wasserstein": cfg.wasserstein_threshold, "js": cfg.js_threshold, "psi": cfg.psi_threshold}
        rule += "; where a distance decides: " + ", ".join(f"{t} >= {limits[t]:g}" for t in distances)
        if {"js", "psi"} & set(distances):
            rule += f" (over categories also chi-square p < {result['alpha']})"
    if result.get("not_judged"):
        print(f"dataset drift: not judged ({result['not_judged']})")
        return 0
    print(f"dataset drift: {'YES' if result['drift'] else 'no'} "
          f"({len(result['drifted_features'])} of {len(result['features'])} features drifted; rule: {rule})"
          + (f"; data quality: {len(result['anomalies'])} column{'s' if len(result['anomalies']) > 1 else ''} "
             "anomalous" if result["anomalies"] else ""))
    return 0


def _print_realised(perf: dict[str, Any]) -> None:
    """The realised quality of the labelled rows since the baseline, beside the baseline's."""
    base, cur = perf.get("baseline") or {}, perf.get("current") or {}
    if not cur.get("labels"):
        return
    shown = [(k, cur[k], base.get(k)) for k in ("accuracy", "auc", "mae") if cur.get(k) is not None]
    if shown:
        print("  realised " + ", ".join(f"{k} {_fmt(v)}" + ("" if b is None else f" (baseline {_fmt(b)})")
                                       for k, v, b in shown)
              + f" in the current label window ({cur['labels']} labels)")


def _print_estimates(perf: dict[str, Any]) -> None:
    """Accuracy estimated before labels (CBPE), beside the realised one of the last label window,
    and the change detectors' findings."""
    est = (perf.get("estimated") or {}).get("last_window") or {}
    guess = (est.get("overall") or {}).get("accuracy")
    if guess is not None:
        real = ((perf.get("last_window") or {}).get("overall") or {}).get("accuracy")
        print(f"  estimated accuracy {_fmt(guess)} (CBPE, last {est['overall']['rows']} served rows)"
              + ("" if real is None else f", realised {_fmt(real)} (last label window)"))
    concept = perf.get("concept_drift") or {}
    if concept.get("labels"):
        print(f"  concept drift: {concept['alarms']} rises of the error found by "
              f"{', '.join(concept['detectors'])} in {concept['labels']} labels")


def _print_canary_labels(perf: dict[str, Any]) -> None:
    """The realised quality of each version other than the champion (challengers, and a champion
    before a promotion) from the labels of the rows it answered."""
    for version, m in sorted((perf.get("challengers") or {}).items()):
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in m.items() if k != "labels")
        print(f"  {version}: realised {shown} from {m['labels']} labels of the rows it answered "
              "(as challenger, or as champion before a promotion)")


def _print_challengers(diff: dict[str, Any]) -> None:
    """How the challenger (canary or shadow) compares with the champion: the share of the rows both
    answered on which they agree, in the open window and the last closed one, and the distance
    between their predictions in the last closed window."""
    roles = {v: r.get("role") for v, r in (diff.get("roles") or {}).items() if r.get("role") != "champion"}
    last = diff.get("last_window") or {}
    for version, role in sorted(roles.items()):
        parts = [f"this window: agreement {diff['agreement']:.1%} over {diff['pairs']} answers both gave"
                 if diff.get("pairs") else "this window: no answers both gave yet"]
        if last.get("pairs"):
            parts.append(f"last window: agreement {last['agreement']:.1%} over {last['pairs']}")
        moved = (last.get("challengers") or {}).get(version)
        if moved:
            parts.append(f"prediction distance {_fmt(moved['prediction_distance'])} ({moved['rows']} rows)")
        print(f"  {role} {version} vs champion {diff.get('champion')}: {'; '.join(parts)}")


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}"


def _status(args: argparse.Namespace) -> int:
    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise ConfigError("raymlops monitor status needs a cluster: set RAY_ADDRESS or pass --address")
    import ray

    # pandas, scipy, pydantic: only when this verb runs, not for `raymlops --help`
    from raymlops.monitor.names import monitor_name

    started = not ray.is_initialized()
    if started:
        join_cluster(address)
    try:
        prefix = monitor_name("")
        names = [args.name] if args.name else sorted(
            a["name"][len(prefix):] for a in ray.util.list_named_actors(all_namespaces=True)
            if a.get("namespace") == NAMESPACE and a["name"].startswith(prefix))
        out: dict[str, Any] = {}
        for route in names:
            try:
                handle = ray.get_actor(monitor_name(route), namespace=NAMESPACE)
            except ValueError:
                raise NotFound(f"no monitor for deployment {route!r} on {address}") from None
            out[route] = ray.get(handle.status.remote(), timeout=30)
    finally:
        if started:
            ray.shutdown()
    if args.json:
        print_json({"monitors": out})
        return 0
    if not out:
        print("no monitors running")
    for route, st in out.items():
        w = st["window"]
        verdict = w.get("verdict") or {}
        overall = verdict.get("overall") or {}
        print(f"{route}: {st['rows_total']} rows, window #{w['index']} with {w['rows']} rows"
              f"{' (restored from checkpoint)' if st.get('restored') else ''}")
        for c in overall.get("columns", []):
            print(f"  {c['column']:<24} {c['test']:<12} {_fmt(c['statistic']):>10} p={_fmt(c['p_value'])}"
                  f"  {'DRIFT' if c['drift'] else ''}")
        labels = (st.get("performance") or {}).get("labels")
        if labels and labels.get("received"):  # every label posted to /feedback, by outcome
            print(f"  labels {labels['received']}: {labels['matched']} matched, {labels['waiting']} waiting, "
                  f"{labels['expired']} expired, {labels['unknown']} unknown")
        _print_realised(st.get("performance") or {})
        _print_estimates(st.get("performance") or {})
        _print_challengers(st.get("differential") or {})
        _print_canary_labels(st.get("performance") or {})
        for a in st["alerts"]["recent"][-10:]:  # when: an alert of an old window reads as news otherwise
            when = time.strftime("%H:%M:%S", time.gmtime(a["ts"])) + " UTC" if a.get("ts") else ""
            window = f"window #{a['window']}, " if a.get("window") is not None else ""
            print(f"  alert [{a['kind']}] ({window}{when}) {a['message']}")
        if st.get("metrics_url"):
            print(f"  metrics {st['metrics_url']}")
    return 0
