"""Finding the user's exception inside Ray's wrappers, and the one-paragraph explanation (no Ray)."""

from __future__ import annotations

import pytest

from raymlops.exceptions import ConfigError, RaymlopsError, ServeError, StepFailed, ValidationError
from raymlops.pipeline.failures import GENERIC_HINT, Failure, describe, explain, hint, parse_remote, unwrap

# What the driver sees, as Ray 2.60 prints it (ANSI colours included), abbreviated.
DATA_TEXT = (
    "\x1b[36mray::ReadRange->MapBatches(bad_batch)()\x1b[39m (pid=30793, ip=192.0.2.2)\n"
    '  File "/home/u/proj/cleaning.py", line 9, in bad_batch\n'
    '    raise ValueError("negative radius in batch")\n'
    "ValueError: negative radius in batch\n"
    "\n"
    "The above exception was the direct cause of the following exception:\n"
    "\n"
    "\x1b[36mray::ReadRange->MapBatches(bad_batch)()\x1b[39m (pid=30793, ip=192.0.2.2)\n"
    "ray.exceptions.UserCodeException: UDF failed to process a data block.\n"
    "Failed to apply UDF transform after 1/1 attempts (total backoff 0.0s).\n"
)
TUNE_TEXT = (
    "step 'train' failed: every trial failed; first error: RayTaskError(ArithmeticError): "
    "\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=31784, ip=192.0.2.2, actor_id=3b7e, repr=_trial)\n"
    "           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
    '  File "/usr/lib/python3.11/site-packages/ray/tune/trainable/trainable.py", line 329, in train\n'
    "    raise skipped from exception_cause(skipped)\n"
    '  File "/work/main/raymlops/train/tune_runner.py", line 55, in _trial\n'
    "    model.fit(X[~val], y[~val])\n"
    '  File "/home/u/proj/models.py", line 13, in fit\n'
    '    raise ArithmeticError("fit exploded on purpose")\n'
    "ArithmeticError: fit exploded on purpose"
)
SERVE_TEXT = (
    "The deployment failed to start 3 times in a row. This may be due to a problem with its constructor or "
    "initial health check failing. See controller logs for details. Error:\n"
    "\x1b[36mray::ServeReplica:m:ModelServer.initialize_and_get_metadata()\x1b[39m (pid=4217, ip=192.0.2.2)\n"
    '  File "/usr/lib/python3.11/site-packages/ray/serve/_private/replica.py", line 1928, in initialize\n'
    "    raise RuntimeError(traceback.format_exc()) from None\n"
    "RuntimeError: Traceback (most recent call last):\n"
    '  File "/usr/lib/python3.11/site-packages/ray/serve/_private/replica.py", line 1867, in initialize\n'
    "    await self._user_callable_wrapper.initialize_callable()\n"
    '  File "/work/main/raymlops/serve/app.py", line 37, in __init__\n'
    '    self.model = joblib.load(io.BytesIO(arts.read_bytes(spec["artifact_key"])))\n'
    '  File "/usr/lib/python3.11/pickle.py", line 1718, in load_build\n'
    "    setstate(state)\n"
    '  File "/home/u/proj/models.py", line 17, in __setstate__\n'
    '    raise RuntimeError("cannot restore this model: bad pickle state")\n'
    "RuntimeError: cannot restore this model: bad pickle state"
)


def test_ray_data_udf_error_names_the_users_exception_not_ray_s_wrapper() -> None:
    parsed = parse_remote(DATA_TEXT)
    assert parsed is not None
    etype, message, tb = parsed
    assert (etype, message) == ("ValueError", "negative radius in batch")
    assert tb.startswith("ray::ReadRange->MapBatches(bad_batch)()")
    assert 'cleaning.py", line 9, in bad_batch' in tb
    assert "\x1b[" not in tb and "UserCodeException" not in tb


def test_tune_trial_error_text_is_followed_to_the_users_frame() -> None:
    etype, message, tb = parse_remote(TUNE_TEXT) or ("", "", "")
    assert (etype, message) == ("ArithmeticError", "fit exploded on purpose")
    failure = describe(StepFailed("train", TUNE_TEXT.split(": ", 1)[1]), "train", context="every trial failed")
    assert failure.remote and failure.type == "ArithmeticError"
    assert failure.where == "/home/u/proj/models.py:13 in fit"  # the user's frame, not Ray's or raymlops'
    assert failure.wrapper is not None and failure.wrapper.startswith("StepFailed:")
    assert "train.candidates" in hint(failure)
    assert failure.traceback.startswith("ray::ImplicitFunc.train() (pid=31784")


def test_serve_replica_traceback_nested_in_a_message_is_cut_to_the_users_part() -> None:
    err = ServeError("deployment of m:v1 failed: Deploying application m failed")
    failure = describe(err, "deploy", extra_texts=[SERVE_TEXT], context="the Serve replica failed to start")
    assert (failure.type, failure.message) == ("RuntimeError", "cannot restore this model: bad pickle state")
    assert failure.traceback.startswith("Traceback (most recent call last):")
    assert "The deployment failed to start" not in failure.traceback
    assert failure.where == "/home/u/proj/models.py:17 in __setstate__"
    assert "Serve replica" in hint(failure)


def test_local_exception_keeps_its_own_traceback_and_exit_code() -> None:
    def inner() -> None:
        raise ConfigError("c.yaml: data.transforms[0].map_batches: cannot import module 'nope'")

    try:
        inner()
    except ConfigError as exc:
        failure = describe(exc, "ingest")
    assert failure.type == "ConfigError" and not failure.remote and failure.exit_code == 2
    assert "in inner" in failure.traceback and "Traceback (most recent call last)" in failure.traceback
    assert "data.transforms" in hint(failure)


def test_unwrap_follows_ray_causes_but_not_the_users_own_chain() -> None:
    class RayTaskError(Exception):  # stands in for ray.exceptions.RayTaskError: carries .cause
        def __init__(self, cause: BaseException) -> None:
            super().__init__(str(cause))
            self.cause = cause

    user = KeyError("k")
    assert unwrap(RayTaskError(RayTaskError(user))) is user
    try:
        try:
            raise OSError("disk")
        except OSError as low:
            raise ValueError("bad value") from low
    except ValueError as exc:
        assert unwrap(exc) is exc  # the user's ValueError, not the OSError it chained


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (Failure("ingest", "ConfigError", "c.yaml: serve.prot: unknown key", ""), "Fix that key"),
        (Failure("ingest", "ConfigError", "data.source: 'x.csv' not found", ""), "data.source exists"),
        (Failure("ingest", "PermissionError", "[Errno 13] Permission denied: 'x.csv'", ""), "readable"),
        (Failure("schema", "ValidationError", "data.target: column 'y' not found", ""), "did not pass validation"),
        # the source was read: its content is the problem, not whether it exists or is readable
        (Failure("ingest", "ValidationError", "data.source: column 'a' appears 2 times in 'd.parquet'; give every "
                 "column a name of its own", ""), "did not pass validation"),
        (Failure("ingest", "ValidationError", "data.source: cannot read 'd.csv' as csv: bad line", ""),
         "data.source exists"),
        (Failure("deploy", "ServeError", "port 8000 on 127.0.0.1 is in use by another program", ""), "serve.port"),
        (Failure(None, "RaymlopsError", "cannot reach the Ray cluster at 10.0.0.1:6379", ""), "ray start --head"),
        (Failure(None, "ConnectionError", "no authentication token was found", ""), "RAY_AUTH_MODE=token"),
        (Failure("train", "IntegrityError", "snapshot ab12 is corrupted", ""), "raymlops doctor"),
        (Failure("evaluate", "ZeroDivisionError", "division by zero", ""), GENERIC_HINT),
    ],
)
def test_known_causes_get_a_specific_hint(failure: Failure, expected: str) -> None:
    assert expected in hint(failure)


def test_explain_is_one_paragraph_naming_step_cause_fix_and_details() -> None:
    failure = describe(StepFailed("train", TUNE_TEXT.split(": ", 1)[1]), "train", context="every trial failed")
    text = explain(failure, "20260101-000000-abc123", resumable=True)
    assert text.startswith("error: run 20260101-000000-abc123 failed at step 'train': every trial failed: "
                           "ArithmeticError: fit exploded on purpose (raised at /home/u/proj/models.py:13 in fit).")
    assert "reused from the cache" in text
    assert text.splitlines()[-1] == "Details: raymlops runs show 20260101-000000-abc123"
    assert "\n\n" not in text and len(text.splitlines()) == 2
    assert "ray::" not in text and "Traceback" not in text


def test_exit_codes_follow_the_exception_hierarchy() -> None:
    for exc, code in ((ValidationError("v"), 2), (ServeError("s"), 1), (RaymlopsError("r"), 1), (ValueError("x"), 1)):
        try:
            raise exc
        except Exception as caught:
            assert describe(caught, "schema").exit_code == code
