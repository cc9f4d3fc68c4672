"""Parsing ``POST /<route>/feedback`` and routing labels to monitor shards (pure: no Ray)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from raymlops.serve.feedback import merge_replies, parse_feedback_request, split_by_shard
from raymlops.serve.handoff import MonitorHandoff, Served, shard_of
from raymlops.serve.request import RequestError


def parse(body: Any, *, raw: bytes | None = None, max_ids: int = 5, regression: bool = False) -> Any:
    data = raw if raw is not None else json.dumps(body).encode()
    return parse_feedback_request(data, 10_000, max_ids, regression=regression, max_rows=3)


def test_ids_and_labels_are_read_numbers_as_floats() -> None:
    fb = parse({"request_ids": ["a", "b-1", "c/2", "d"], "labels": [1, 0.0, "yes", [1, 0]]})
    assert fb.request_ids == ["a", "b-1", "c/2", "d"]
    assert fb.labels == [1.0, 0.0, "yes", [1.0, 0.0]]


BAD = [
    # (id, body, status, error, words in the message, field)
    ("not-an-object", [1, 2], 400, "bad_request", ["JSON object"], None),
    ("missing-ids", {"labels": [1]}, 422, "invalid_feedback", ["missing field 'request_ids'"], "request_ids"),
    ("missing-labels", {"request_ids": ["a"]}, 422, "invalid_feedback", ["missing field 'labels'"], "labels"),
    ("ids-not-list", {"request_ids": "a", "labels": [1]}, 422, "invalid_feedback", ["'request_ids'", "list"],
     "request_ids"),
    ("labels-not-list", {"request_ids": ["a"], "labels": 1}, 422, "invalid_feedback", ["'labels'", "list"],
     "labels"),
    ("empty", {"request_ids": [], "labels": []}, 422, "invalid_feedback", ["non-empty"], "request_ids"),
    ("lengths-differ", {"request_ids": ["a", "b"], "labels": [1]}, 422, "invalid_feedback",
     ["differ in length", "2 and 1"], "labels"),
    ("too-many", {"request_ids": list("abcdef"), "labels": [1] * 6}, 422, "invalid_feedback",
     ["6 ids", "limit of 5"], "request_ids"),
    ("id-not-string", {"request_ids": ["a", 7], "labels": [1, 1]}, 422, "invalid_feedback", ["request_ids[1]"],
     "request_ids"),
    ("id-bad-chars", {"request_ids": ["a b"], "labels": [1]}, 422, "invalid_feedback", ["request_ids[0]"],
     "request_ids"),
    ("label-bool", {"request_ids": ["a", "b"], "labels": [1, True]}, 422, "invalid_feedback",
     ["labels[1]", "bool"], "labels"),
    ("label-null", {"request_ids": ["a"], "labels": [None]}, 422, "invalid_feedback", ["labels[0]", "null"],
     "labels"),
    ("label-object", {"request_ids": ["a"], "labels": [{"y": 1}]}, 422, "invalid_feedback", ["labels[0]", "dict"],
     "labels"),
    ("label-in-list", {"request_ids": ["a"], "labels": [[1, "x", None]]}, 422, "invalid_feedback",
     ["labels[0][2]"], "labels"),
    ("label-list-too-long", {"request_ids": ["a"], "labels": [[1, 1, 1, 1]]}, 422, "invalid_feedback",
     ["labels[0]", "1 to 3"], "labels"),
    ("list-on-row-key", {"request_ids": ["a/1"], "labels": [[1]]}, 422, "invalid_feedback", ["row key"], "labels"),
    ("unknown-field", {"request_ids": ["a"], "labels": [1], "extra": 1}, 422, "invalid_feedback", ["'extra'"],
     "extra"),
]


@pytest.mark.parametrize(("body", "status", "error", "words", "field"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_mistakes_name_the_field(body: Any, status: int, error: str, words: list[str], field: str | None) -> None:
    with pytest.raises(RequestError) as info:
        parse(body)
    exc = info.value
    assert (exc.status, exc.error) == (status, error), exc.message
    for word in words:
        assert word in exc.message, (word, exc.message)
    if field is not None:
        assert exc.details[0]["field"] == field


def test_bad_json_is_400_and_too_large_is_413() -> None:
    with pytest.raises(RequestError) as info:
        parse(None, raw=b'{"request_ids": [')
    assert info.value.status == 400 and info.value.error == "malformed_json"
    with pytest.raises(RequestError) as info:
        parse(None, raw=b"")
    assert "request_ids" in info.value.message  # the example shows the feedback body, not predict's
    with pytest.raises(RequestError) as info:
        parse_feedback_request(b'{"request_ids": ["a"], "labels": [1]}', 10, 5)
    assert info.value.status == 413


def test_regression_labels_must_be_numbers() -> None:
    with pytest.raises(RequestError, match=r"labels\[0\].*regression"):
        parse({"request_ids": ["a"], "labels": ["1.5"]}, regression=True)
    assert parse({"request_ids": ["a"], "labels": [1.5]}, regression=True).labels == [1.5]
    # finite but past what sums of absolute errors can hold (two 1e308 labels made the MAE inf)
    with pytest.raises(RequestError, match=r"labels\[1\]: expected a number, found -1e\+308, beyond the largest"):
        parse({"request_ids": ["a", "b"], "labels": [2.0, -1e308]}, regression=True)
    with pytest.raises(RequestError, match=r"labels\[0\]\[1\]: .*1e\+200"):
        parse({"request_ids": ["a"], "labels": [[1.0, 1e200]]}, regression=True)
    assert parse({"request_ids": ["a"], "labels": [1e150]}, regression=True).labels == [1e150]
    assert parse({"request_ids": ["a"], "labels": [1e308]}).labels == [1e308]  # a classifier's class: any number


def test_a_request_id_sent_as_a_number_is_named_a_number() -> None:
    with pytest.raises(RequestError, match=r"request_ids\[0\]: .*found a number"):
        parse({"request_ids": [123], "labels": [1]})


def test_shards_follow_the_request_id_and_row_keys_stay_with_their_request() -> None:
    ids = [f"req-{i}" for i in range(200)]
    shards = [shard_of(r, 3) for r in ids]
    assert set(shards) == {0, 1, 2}  # spread over all shards
    assert all(shard_of(f"{r}/4", 3) == s for r, s in zip(ids, shards, strict=True))
    assert all(shard_of(r, 1) == 0 for r in ids)
    fb = parse_feedback_request(json.dumps({"request_ids": ids[:50], "labels": [1] * 50}).encode(), 10**6, 100)
    parts = split_by_shard(fb, 3)
    assert sum(len(p[0]) for p in parts) == 50
    for s, (part_ids, labels) in enumerate(parts):
        assert len(part_ids) == len(labels) and all(shard_of(r, 3) == s for r in part_ids)
    merged = merge_replies([{"matched": 2, "unmatched": 1, "pending": 5}, {"matched": 1, "unmatched": 0,
                                                                           "pending": 2}])
    assert merged == {"matched": 3, "waiting": 0, "expired": 0, "unknown": 0, "unmatched": 1, "pending": 7,
                      "totals": {}}


def test_detail_is_asked_in_the_body_and_outcomes_come_back_in_the_given_order() -> None:
    ids = [f"req-{i}" for i in range(12)]
    fb = parse_feedback_request(json.dumps({"request_ids": ids, "labels": [1] * 11 + [[1, 0]],
                                            "detail": True}).encode(), 10**6, 100)
    assert fb.detail and not parse({"request_ids": ["a"], "labels": [1]}).detail
    with pytest.raises(RequestError, match="'detail' must be true or false"):
        parse({"request_ids": ["a"], "labels": [1], "detail": 1})
    parts = split_by_shard(fb, 3)
    outcome_of = {rid: ("matched" if i % 2 else "waiting") for i, rid in enumerate(ids)}
    outcome_of[ids[-1]] = ["matched", "unknown"]  # type: ignore[assignment]  # a list of labels: one per row
    replies = [{"matched": 1, "waiting": 2, "unknown": 1, "expired": 0, "unmatched": 3, "pending": 0,
                "totals": {"received": 4, "matched": 1}, "outcomes": [outcome_of[r] for r in part_ids]}
               for part_ids, _ in parts]
    merged = merge_replies(replies, fb)
    assert merged["outcomes"] == [outcome_of[r] for r in ids]
    assert merged["totals"] == {"received": 12, "matched": 3} and merged["waiting"] == 6
    assert "outcomes" not in merge_replies(replies)


def test_handoff_sends_each_shard_its_requests_with_role_and_epoch() -> None:
    sent: list[dict[str, Any]] = []

    async def send(payload: dict[str, Any]) -> None:
        sent.append(payload)

    h = MonitorHandoff(send, shards=2)
    ids = [f"r{i}" for i in range(40)]
    for i, rid in enumerate(ids):
        h.offer(Served(np.ones((1, 2)), np.zeros(1), "m:v2", 1.0, 200, rid, "champion", epoch=3 + i % 2))
    h.offer(Served(np.ones((1, 2)), np.zeros(1), "m:v1", 1.0, 200, "r0", "shadow", epoch=4))
    assert asyncio.run(h.flush()) == 41
    by_shard = {(p["shard"], p["role"]): p for p in sent}
    assert {k[0] for k in by_shard} == {0, 1}
    for p in sent:
        assert all(shard_of(r, 2) == p["shard"] for r in p["request_ids"])
    champion_rows = [r for p in sent if p["role"] == "champion" for r in p["request_ids"]]
    assert sorted(champion_rows) == sorted(ids)
    assert all(p["epoch"] == 4 for p in sent)  # the newest table of the group
    shadow = next(p for p in sent if p["role"] == "shadow")
    assert shadow["shard"] == shard_of("r0", 2) and shadow["version"] == "m:v1"
    with pytest.raises(ValueError, match="shards"):
        MonitorHandoff(send, shards=0)


def test_a_label_that_is_not_a_class_of_the_classifier_is_422_naming_it() -> None:
    def parse(labels: list[Any], classes: tuple[Any, ...]) -> Any:
        ids = [f"r{i}" for i in range(len(labels))]
        return parse_feedback_request(json.dumps({"request_ids": ids, "labels": labels}).encode(), 10_000, 10,
                                      classes=classes, max_rows=3)

    assert parse(["yes", "no"], ("no", "yes")).labels == ["yes", "no"]
    assert parse([1, 0.0, [1, 0]], (0, 1)).labels == [1.0, 0.0, [1.0, 0.0]]  # JSON numbers against int classes
    for labels, classes, where, found in ((["maybe"], ("no", "yes"), "labels[0]", "maybe"),
                                          (["yes", 1], ("no", "yes"), "labels[1]", 1.0),
                                          (["1"], (0, 1), "labels[0]", "1"),  # a string is not the number 1
                                          ([[0, 2]], (0, 1), "labels[0][1]", 2.0)):
        with pytest.raises(RequestError) as info:
            parse(labels, classes)
        err = info.value
        assert err.status == 422 and err.message.startswith(f"{where}: {found!r} is not a class of the model")
        assert err.details[0]["found"] == found and err.details[0]["expected"] == list(classes)
    # a regression model takes any finite number, whatever classes say
    assert parse([3.5], ()).labels == [3.5]


def test_a_boolean_classifier_takes_true_and_false_as_labels() -> None:
    """A model trained on a boolean target (classes false, true) takes JSON booleans (and 0 / 1);
    they were refused ('expected a number or a string, found bool'). Other classifiers still refuse them."""
    def parse(labels: list[Any], classes: tuple[Any, ...]) -> Any:
        ids = [f"r{i}" for i in range(len(labels))]
        return parse_feedback_request(json.dumps({"request_ids": ids, "labels": labels}).encode(), 10_000, 10,
                                      classes=classes, max_rows=3)

    assert parse([True, False, [False, True], 1], (False, True)).labels == [1.0, 0.0, [0.0, 1.0], 1.0]
    with pytest.raises(RequestError, match=r"labels\[0\]: .*2.0 is not a class"):
        parse([2], (False, True))
    for classes in ((0, 1), ("no", "yes"), ()):
        with pytest.raises(RequestError, match=r"labels\[0\]: expected a number or a string, found bool"):
            parse([True], classes)


class _Shard:
    """A monitor shard's handle around a real Monitor (what the actor does under its lock):
    ``.remote`` runs the call at once and gives an awaitable, as a Ray object ref is."""

    def __init__(self, monitor: Any) -> None:
        self.monitor, self.calls = monitor, []
        self.check_feedback = self._method("check_feedback")
        self.feedback = self._method("feedback")

    def _method(self, name: str) -> Any:
        shard = self

        class _Remote:
            @staticmethod
            def remote(ids: list[str], labels: list[Any], **_: Any) -> Any:
                shard.calls.append(name)
                fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                try:
                    fut.set_result(getattr(shard.monitor, name)(ids, labels))
                except Exception as exc:  # noqa: BLE001  # as a failed Ray task raises at await
                    fut.set_exception(exc)
                return fut

        return _Remote()


def test_a_refused_list_of_labels_changes_no_shard() -> None:
    """Labels for two shards, one of them a list of the wrong length for its request: every shard
    checks its part first, so the shard whose labels were fine takes none of them either (422)."""
    from raymlops.config import MonitorConfig
    from raymlops.monitor import Monitor, build_reference
    from raymlops.serve.feedback import forward

    rng = np.random.default_rng(0)
    reference = build_reference({"x": rng.normal(size=500)})
    shards = [_Shard(Monitor(reference, MonitorConfig(window_rows=100, alerts={"log": False}))) for _ in range(2)]
    ids = {shard_of(f"r{i}", 2): f"r{i}" for i in range(20)}  # a request id for each shard
    multi, single = ids[0], ids[1]
    shards[0].monitor.ingest({"x": rng.normal(size=3)}, np.array([1, 0, 1]), request_ids=[multi] * 3)
    shards[1].monitor.ingest({"x": rng.normal(size=1)}, np.array([1]), request_ids=[single])
    request = parse({"request_ids": [single, multi], "labels": [1, [1, 0]]})
    with pytest.raises(RequestError) as info:
        asyncio.run(forward(shards, request, False, "r"))
    assert info.value.status == 422 and "answered 3 rows, so its list needs 3 labels" in info.value.message
    assert [s.calls for s in shards] == [["check_feedback"], ["check_feedback"]]
    assert shards[1].monitor.performance.counts.received == 0  # its good label was not taken either
    good = parse({"request_ids": [single, multi], "labels": [1, [1, 0, 1]]})
    replies = asyncio.run(forward(shards, good, False, "r"))
    assert [r[0] for r in replies] == [3, 1]  # Monitor.feedback's (matched, alerts) per shard
