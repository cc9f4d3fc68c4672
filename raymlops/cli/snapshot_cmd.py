"""``raymlops snapshot create | list | show | verify | diff | tag``.

``create`` reads a source with Ray Data (the pipeline's ingest, without transforms) and writes
a content-addressed snapshot; ``diff A B`` compares B with the reference A (schema, and every
column's drift scores; the result is recorded). Everything else reads the metadata store and
the artifacts, without Ray. Exit codes: 0 ok, 1 a failed verify (or drift with
``--fail-on-drift``), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from raymlops.cli.common import add_command, print_json
from raymlops.exceptions import ConfigError, RaymlopsError, ValidationError
from raymlops.ray_session import ensure_ray


def register(sub: Any) -> None:
    snap = add_command(sub, "snapshot", help="data snapshots").add_subparsers(dest="verb", metavar="VERB")

    c = add_command(snap, "create", help="snapshot a source (CSV, Parquet or JSON under a path or URI, "
                                          "callable:module:function, sklearn://name)")
    c.add_argument("--source", required=True, metavar="URI",
                   help="a path, s3://…, gs://…, hdfs://… (options in the query string, credentials from the "
                        "environment), callable:module:function, or sklearn://name")
    c.add_argument("--format", default="auto", choices=["auto", "csv", "parquet", "json"],
                   help="the files' format (default: from their extension)")
    c.add_argument("--tag", action="append", default=[], metavar="NAME", help="also tag it NAME (repeatable)")
    c.add_argument("--reason", help="why (kept in the audit log)")
    c.add_argument("--json", action="store_true",
                   help='last stdout line: {"snapshot": ID, "rows": N, "new": true|false} (+ "repaired": [...] '
                        'when the stored copy of this data failed its manifest and was written again)')

    s_list = add_command(snap, "list", help="list snapshots")
    s_list.add_argument("--json", action="store_true", help="one JSON document on stdout")

    show = add_command(snap, "show", help="one snapshot: lineage, schema, profile, files, drift checks")
    show.add_argument("id", help="id, unique id prefix, or tag")
    show.add_argument("--json", action="store_true", help="one JSON document on stdout")

    s_verify = add_command(snap, "verify", help="re-hash a snapshot's files (exit 1 names what changed)")
    s_verify.add_argument("id", help="id, unique id prefix, or tag")
    s_verify.add_argument("--json", action="store_true", help="one JSON document on stdout")
    s_verify.add_argument("--deep", action="store_true",
                          help="also hash the rows again and compare with the id (finds data changed together "
                               "with its manifest; reads every row)")

    diff = add_command(snap, "diff", help="compare snapshot B with the reference A: schema and per-column drift "
                                          "(recorded with B)")
    diff.add_argument("a", metavar="A", help="the reference: id, prefix or tag")
    diff.add_argument("b", metavar="B", help="the snapshot to check: id, prefix or tag")
    diff.add_argument("--config", metavar="YAML", help="take the drift settings from this pipeline's data.drift")
    diff.add_argument("--fail-on-drift", action="store_true", help="exit 1 when the dataset drifted")
    diff.add_argument("--json", action="store_true", help="one JSON document on stdout")

    tag = add_command(snap, "tag", help="point a tag at a snapshot (audited)")
    tag.add_argument("id", help="id, unique id prefix, or tag")
    tag.add_argument("name", help="the tag: letters, digits, '.', '_', '-'")
    tag.add_argument("--reason", help="why (kept in the audit log)")
    tag.add_argument("--json", action="store_true", help="one JSON document on stdout")


def run(args: argparse.Namespace) -> int:
    # pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops.data.snapshot import check_tag
    from raymlops.data.sources import check_local_source
    from raymlops.store.home import Store

    if args.verb == "create":  # what can be checked without a home or Ray, before either is made
        for t in args.tag:
            check_tag(t)
        try:
            check_local_source(args.source)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("data.source:", "--source:", 1)) from None
    store = Store.open(args.home, create=args.verb == "create")  # the others read a home that exists
    handler = {"create": _create, "list": _list, "show": _show, "verify": _verify, "diff": _diff, "tag": _tag}
    return handler[args.verb](store, args)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


# -- create ------------------------------------------------------------------------------------


def _create(store: Any, args: argparse.Namespace) -> int:
    # the pipeline, scipy, pydantic: only when this verb runs, not for `raymlops --help`
    from raymlops.data.errors import read_error
    from raymlops.data.snapshot import check_tag, create_snapshot
    from raymlops.data.sources import read_source, redact_uri
    from raymlops.pipeline.failures import unwrap
    from raymlops.pipeline.steplog import StepLog, capture_logging

    for t in args.tag:
        check_tag(t)  # before starting Ray
    shown = redact_uri(args.source)
    if sys.stderr.isatty():  # progress for people; scripts get only the result (and one line on error)
        print(f"snapshot: reading {shown} with Ray Data, hashing, profiling, writing ...", file=sys.stderr, flush=True)
    ensure_ray()
    log = StepLog()
    try:
        with capture_logging(log):  # Ray Data logs a task's failure with its traceback; we say it in one line
            ds = read_source(args.source, args.format)
            info = create_snapshot(store, ds, args.source, args.reason or "raymlops snapshot create", tags=args.tag,
                                   verify_existing=True)
    except RaymlopsError:
        raise
    except Exception as exc:  # Ray wraps the reader's errors: report the cause, in one line
        cause = unwrap(exc)
        if isinstance(cause, RaymlopsError):
            raise cause from None
        unreadable = read_error(exc, args.source)
        if unreadable is not None:
            raise unreadable from None
        text = _first_line(cause)
        inner = cause.__cause__ or cause.__context__
        if inner is not None and _first_line(inner) not in text:
            text += f" ({_first_line(inner)})"
        raise ValidationError(f"cannot snapshot {shown}: {type(cause).__name__}: {text}") from None
    if args.json:
        print_json({"snapshot": info.id, "rows": info.rows, "new": info.new}
                   | ({"repaired": list(info.repaired)} if info.repaired else {}))
    elif info.repaired:
        print(f"repaired: snapshot {info.id} holds this data, and its stored copy failed its manifest "
              f"({'; '.join(info.repaired)}): written again from {args.source}")
    elif info.new:
        print(f"created snapshot {info.id}: {info.rows} rows, {_size(info.bytes)} from {info.source}"
              f" (tags: {', '.join(info.tags) or '-'})")
    else:
        print(f"unchanged: snapshot {info.id} already holds this data ({info.rows} rows); stored nothing new"
              f" (tags: {', '.join(info.tags) or '-'})")
    return 0


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):  # Ray Data's retry note is spliced into its text: said from its fields
        try:
            return (f"a file is not {str(exc.encoding).splitlines()[0]} text (byte {exc.start}: {exc.reason}): "
                    "give --format, or point --source at the data files alone")
        except AttributeError:
            pass
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# -- list / show / verify / tag ----------------------------------------------------------------


def _list(store: Any, args: argparse.Namespace) -> int:
    # scipy, pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops.data.snapshot import list_snapshots

    snaps = list_snapshots(store)
    if args.json:
        print_json(snaps)
        return 0
    if not snaps:
        print("no snapshots yet (raymlops snapshot create --source URI)", file=sys.stderr)
    for s in snaps:
        kind = "" if s["kind"] == "data" else f" [{s['kind']}]"
        print(f"{s['id'][:12]}  {_when(s['created_at'])}  {s['rows']:>10} rows  {','.join(s['tags']) or '-':<16} "
              f"{s['source']}{kind}")
    return 0


def _show(store: Any, args: argparse.Namespace) -> int:
    # scipy, pydantic, PyYAML: only when this verb runs, not for `raymlops --help`
    from raymlops.data.drift import list_checks
    from raymlops.data.snapshot import load_manifest, resolve_snapshot, snapshot_info

    snap_id = resolve_snapshot(store, args.id)
    info = snapshot_info(store, snap_id)
    manifest = load_manifest(store, snap_id)
    checks = list_checks(store, snap_id)
    if args.json:
        print_json({"snapshot": snap_id, "tags": list(info.tags), "checks": checks, "manifest": manifest})
        return 0
    print(f"snapshot   {snap_id}  ({info.kind})")
    print(f"created    {_when(info.created_at)}")
    print(f"rows       {info.rows}  ({_size(info.bytes)} in {len([f for f in manifest['files']])} files)")
    print(f"tags       {', '.join(info.tags) or '-'}")
    print(f"source     {', '.join(info.sources) or info.source}")
    print(f"parent     {info.parent or '-'}")
    print(f"transforms {info.transform_hash or '-'}")
    validation = manifest.get("validation")
    if validation:
        print(f"validation {validation.get('rows_in')} in, {validation.get('rows_kept')} kept, "
              f"{validation.get('rows_quarantined')} quarantined ({validation.get('policy')})"
              + (f" -> {str(validation.get('quarantine_snapshot'))[:12]}" if validation.get("quarantine_snapshot")
                 else ""))
    profile = (manifest.get("profile") or {}).get("columns", {})
    print("\ncolumn                     type        nulls  min          max          mean         std          "
          "domain")
    for col in manifest["schema"]:
        p = profile.get(col["name"], {})
        domain = col.get("domain")
        dom = "-" if not domain else ", ".join(map(_shown, domain[:6])) + (" …" if len(domain) > 6 else "")
        print(f"{col['name'][:26]:<26} {col['type'][:11]:<11} {p.get('nulls', '?'):>5}  {_num(col.get('min'))}"
              f"{_num(col.get('max'))}{_num(p.get('mean'))}{_num(p.get('std'))}{dom}")
    if checks:
        print("\ndrift checks (this snapshot against a reference)")
        for ch in checks:
            print(f"  vs {ch['reference'][:12]}  {_when(ch['created_at'])}  {ch['drifted']} of {ch['tested']} "
                  f"columns drifted, dataset drift: {'yes' if ch['dataset_drift'] else 'no'}")
    return 0


def _shown(value: Any) -> str:
    """A domain value as one unambiguous item of a one-line, comma-separated list: quoted (JSON
    escapes) when it holds a comma, a line break or another control character, or starts or ends
    with a space."""
    text = str(value)
    if "," in text or text != text.strip() or any(ord(c) < 32 or c == "\x7f" for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def _num(v: Any) -> str:
    if v is None:
        return f"{'-':<13}"
    return f"{v:<13.6g}" if isinstance(v, float) else f"{v!s:<13}"


def _verify(store: Any, args: argparse.Namespace) -> int:
    # scipy, pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops.data.snapshot import resolve_snapshot, verify_snapshot
    from raymlops.data.snapshot_read import content_problems

    snap_id = resolve_snapshot(store, args.id)
    problems = content_problems(store, snap_id) if args.deep else verify_snapshot(store, snap_id)
    if args.json:
        print_json({"snapshot": snap_id, "ok": not problems, "problems": problems})
    else:
        print(f"{snap_id[:12]}: ok" if not problems else "\n".join(f"{snap_id[:12]}: {p}" for p in problems))
    return 0 if not problems else 1


def _tag(store: Any, args: argparse.Namespace) -> int:
    # scipy, pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops.data.snapshot import tag_snapshot

    snap_id, previous = tag_snapshot(store, args.id, args.name, args.reason or "raymlops snapshot tag")
    if args.json:
        print_json({"snapshot": snap_id, "tag": args.name, "previous": previous})
    elif previous == snap_id:
        print(f"{args.name} already points at {snap_id[:12]}")
    else:
        print(f"tagged {snap_id[:12]} as {args.name}" + (f" (was {previous[:12]})" if previous else ""))
    return 0


# -- diff --------------------------------------------------------------------------------------


def _diff(store: Any, args: argparse.Namespace) -> int:
    # scipy, pydantic, PyYAML: only when this verb runs, not for `raymlops --help`
    from raymlops.data.drift import Reference, check_snapshot, settings_from_config
    from raymlops.data.schema import schema_changes
    from raymlops.data.snapshot import resolve_snapshot, snapshot_info
    from raymlops.data.snapshot_read import load_profile

    settings = None
    if args.config:
        # pydantic, PyYAML, pyarrow: only when this verb runs, not for `raymlops --help`
        from raymlops.config import load_config

        settings = settings_from_config(load_config(args.config).data.drift)
    a, b = resolve_snapshot(store, args.a), resolve_snapshot(store, args.b)
    info_a, info_b = snapshot_info(store, a), snapshot_info(store, b)
    reference = Reference(a, load_profile(store, a), f"snapshot diff {args.a} {args.b}")
    report = check_snapshot(store, b, reference, settings, reason=f"raymlops snapshot diff {args.a} {args.b}")
    changes = schema_changes(info_a.schema, info_b.schema)
    drifted = report.dataset_drift
    if args.json:
        print_json({"reference": a, "snapshot": b, "rows": {"reference": info_a.rows, "snapshot": info_b.rows},
                    "schema_changes": changes, "dataset_drift": drifted, "report": report.to_dict()})
    else:
        print(f"reference {a[:12]} ({info_a.rows} rows)  ->  snapshot {b[:12]} ({info_b.rows} rows)")
        print("schema: " + ("unchanged" if not changes else "; ".join(changes)))
        # a p-value test's verdict compares its corrected p-value (adj. p) with the threshold (alpha)
        print(f"\n{'column':<26} {'kind':<11} {'test':<13} {'score':>10} {'adj. p':>9} {'threshold':>9}  drift  "
              f"{'ks_p':>9} {'wasserst.':>9} {'psi':>7} {'js':>7} {'chi2_p':>9}")
        for c in report.columns:
            s = c.scores
            flag = "YES" if c.drifted else ("-" if c.test is None else "no")
            print(f"{c.column[:26]:<26} {c.kind:<11} {(c.test or '-'):<13} {_f(c.score):>10} "
                  f"{_f(c.p_adjusted):>9} {_f(c.threshold):>9}  "
                  f"{flag:<5}  {_f(s.get('ks_p_value')):>9} {_f(s.get('wasserstein_normed')):>9} "
                  f"{_f(s.get('psi')):>7} {_f(s.get('jensenshannon')):>7} {_f(s.get('chi2_p_value')):>9}"
                  + (f"  ({c.note})" if c.note else "") + ("  (approximate)" if c.approximate else ""))
        st = report.settings
        tested = any(c.p_adjusted is not None for c in report.columns)
        if st.dataset_rule == "any":
            rule = "rule: any column drifted" + (f", p-values corrected ({st.correction})" if tested else "")
        else:  # Evidently's: a share of the columns, each p-value test at the uncorrected level
            rule = (f"rule: at least {st.drift_share:.0%} of the columns drifted, share {report.share:.2f}"
                    + (", p-values uncorrected" if tested else ""))
        print(f"\n{report.summary()} ({rule})")
    return 1 if (drifted and args.fail_on_drift) else 0


def _f(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if (abs(v) >= 1e-3 or v == 0) else f"{v:.1e}"
    return json.dumps(v)
