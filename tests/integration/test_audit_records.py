"""Every state-changing operation that exists writes exactly the audit records expected, and the
read-only commands write none: a quickstart run (snapshot, registration, champion, deployment),
a second run whose model the gate rejects, and alias moves from the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from raymlops import Store, run_pipeline
from raymlops.audit import records, verify
from raymlops.cli import main

pytestmark = pytest.mark.integration


def test_quickstart_and_registry_commands_write_exactly_these_records(
    ray_session: None, quickstart, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ray import serve

    from raymlops.hooks.records import WebhookDB, list_deliveries
    from raymlops.hooks.settings import WebhookConfig
    from raymlops.serve.deploy import serve_running

    from .conftest import free_port

    home = str(tmp_path / "home")
    # a receiver of deployment changes (nobody listens on its port: each delivery is recorded, failed)
    hook = WebhookDB(home).add(WebhookConfig.model_validate({"url": f"http://127.0.0.1:{free_port()}/hook",
                                                     "events": ["deployment.changed"], "max_attempts": 1}))
    # Serve already runs (another program's): the run stops its own deployment, and leaves Serve up
    serve.start(http_options={"host": "127.0.0.1", "port": quickstart.serve.port})
    first = run_pipeline(quickstart, home=home, progress=lambda _: None)  # serves, then stops serving
    assert first.gate == "passed" and first.endpoint
    assert serve_running() and "breast-cancer" not in serve.status().applications
    # the run's deployment is sent as the deploy command's are (the run sent none)
    sent = [d["event_type"] for d in list_deliveries(home)]
    assert sent.count("deployment.changed") >= 1, sent

    one = quickstart.train.candidates[0].model_copy(update={"params": {"C": 1.0, "max_iter": 2000}})
    strict = quickstart.model_copy(update={
        # the rule parsed, as a config file's is (model_copy would leave it a string)
        "gate": quickstart.gate.model_validate({**quickstart.gate.model_dump(), "rules": ["roc_auc >= 0.99999"]}),
        "serve": quickstart.serve.model_copy(update={"enabled": False}),
        "train": quickstart.train.model_copy(update={"candidates": [one]}),
    })
    second = run_pipeline(strict, home=home, progress=lambda _: None)
    assert second.gate == "rejected" and second.snapshot == first.snapshot

    h = ["--home", home]
    assert main(["models", "promote", "breast-cancer:v1", "--alias", "staging", "--reason", "qa sign-off", *h]) == 0
    assert main(["models", "promote", "breast-cancer:v2", "--alias", "staging", "--reason", "try v2", *h]) == 0
    assert main(["models", "rollback", "breast-cancer", "--alias", "staging", "--reason", "v2 is worse", *h]) == 0

    store = Store.open(home)
    added, *rest = records(store.metadata)  # the receiver's subscription came first
    assert (added.action, added.record["ids"]) == ("webhook.added", {"webhook": hook.id})
    assert added.record["how"]["host"] == "127.0.0.1" and added.record["how"]["events"] == ["deployment.changed"]
    got = [(r.action, r.record["ids"], r.record["reason"]) for r in rest]
    snap, run1, run2 = first.snapshot, f"pipeline breast-cancer run {first.run_id}", \
        f"pipeline breast-cancer run {second.run_id}"
    v1, v2 = "breast-cancer:v1", "breast-cancer:v2"
    assert got == [
        ("snapshot.created", {"snapshot": snap}, run1),
        ("model.trained", {"snapshot": snap, "run": first.run_id}, run1),
        ("model.registered", {"model": v1, "snapshot": snap, "run": first.run_id}, run1),
        ("alias.moved", {"model": v1, "alias": "champion", "previous": None, "run": first.run_id}, "gate passed"),
        ("deployment.created", {"model": v1, "deployment": "breast-cancer"}, run1),
        ("deployment.deleted", {"model": v1, "deployment": "breast-cancer"}, got[5][2]),
        # second run: same data, so no snapshot record; the gate says no
        ("model.trained", {"snapshot": snap, "run": second.run_id}, run2),
        ("model.registered", {"model": v2, "snapshot": snap, "run": second.run_id}, run2),
        ("gate.rejected", {"model": v2, "run": second.run_id}, got[8][2]),
        ("alias.moved", {"model": v1, "alias": "staging", "previous": None}, "qa sign-off"),
        ("alias.moved", {"model": v2, "alias": "staging", "previous": v1}, "try v2"),
        ("alias.rolled_back", {"model": v1, "alias": "staging", "previous": v2}, "v2 is worse"),
    ]
    assert "roc_auc >= 0.99999" in got[8][2]
    # a run's whole trail by its id
    assert [r.action for r in records(store.metadata, id=second.run_id)] == [
        "model.trained", "model.registered", "gate.rejected"]
    assert got[5][2].startswith(run1 + ": the run is over")

    recs = records(store.metadata)[1:]
    how: list[dict[str, Any]] = [r.record["how"] for r in recs]
    assert how[0] == {"source": "sklearn://breast_cancer", "rows": 569}
    assert how[1]["trials"] == 4 and how[1]["strategy"] == "tune" and 0.9 <= how[1]["roc_auc"] <= 1.0
    assert how[6]["trials"] == 1 and how[6]["best"]["params"] == {"C": 1.0, "max_iter": 2000}
    assert how[2]["config_hash"] == quickstart.config_hash() and how[2]["status"] == "registered" and how[2]["code"]
    assert how[4] == {"config_hash": quickstart.config_hash(), "endpoint": first.endpoint}
    assert how[5] == {"endpoint": first.endpoint}
    assert how[7]["config_hash"] == strict.config_hash() and how[7]["status"] == "rejected"
    assert [h_["command"] for h_ in how[9:]] == ["promote", "promote", "rollback"]
    assert all({"user", "host", "pid"} <= set(r.record["actor"]) for r in recs)
    assert all(b.ts >= a.ts for a, b in zip(recs, recs[1:], strict=False))

    # reading writes nothing
    for argv in (["models", "list"], ["models", "show", "breast-cancer@champion"], ["models", "verify", v1],
                 ["models", "history", "breast-cancer"], ["lineage", v1], ["snapshot", "list"],
                 ["snapshot", "verify", "latest"], ["audit"], ["audit", "verify"], ["status"]):
        assert main([*argv, *h]) == 0, argv
    capsys.readouterr()
    assert len(records(store.metadata)) == 13
    assert verify(store.metadata)[0]
