"""The event model and its schema, webhook signatures, and sink specifications."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from swapwatch.events import Event, EventLog, EventType, StreamEvents
from swapwatch.events.errors import SignatureError, SinkConfigError
from swapwatch.events.model import schema
from swapwatch.events.signing import sign, verify
from swapwatch.events.sinks.base import RetryPolicy, parse_sink
from swapwatch.events.sinks.factory import create_sink
from swapwatch.fusion import AlarmChange, Alert, DecisionConfig, Policy


def recorded_events(tmp_path: Path, run: str = "run-1") -> list[dict[str, object]]:
    tmp_path.mkdir(exist_ok=True)
    with EventLog(tmp_path / "events.sqlite") as outbox:
        events = StreamEvents(outbox, "cam-1", run, DecisionConfig(policy=Policy.KYC, h=11.0))
        events.started({"source": "rtmp://host/live/***"})
        events.alert(Alert(AlarmChange.RAISED, 3, 1.25, 0.97, 12.5))
        events.alert(Alert(AlarmChange.CLEARED, 3, 9.5, 0.2, 0.0))
        events.failed(RuntimeError("decoder gave up"))
        events.ended({"reason": "end", "frames": {"decoded": 10}})
        return [json.loads(e.body) for e in outbox.read_after(0)]


def test_every_event_type_matches_the_published_schema(tmp_path: Path) -> None:
    validator = jsonschema.Draft202012Validator(
        schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    events = recorded_events(tmp_path)
    assert [e["type"] for e in events] == [
        t.value
        for t in (
            EventType.STREAM_STARTED,
            EventType.ALERT_RAISED,
            EventType.ALERT_CLEARED,
            EventType.STREAM_ERROR,
            EventType.STREAM_ENDED,
        )
    ]
    for event in events:
        validator.validate(event)
    raised = events[1]
    assert raised["track"] == 3 and raised["media_time"] == 1.25 and raised["score"] == 0.97
    assert raised["evidence"] == {"cusum": 12.5, "threshold": 11.0, "policy": "kyc"}
    assert events[3]["detail"] == {"error": "decoder gave up", "kind": "RuntimeError"}


def test_ids_are_stable_for_a_run_and_new_for_another(tmp_path: Path) -> None:
    first = [e["id"] for e in recorded_events(tmp_path / "a")]
    again = [e["id"] for e in recorded_events(tmp_path / "b")]
    other = [e["id"] for e in recorded_events(tmp_path / "c", run="run-2")]
    assert first == again
    assert len(set(first)) == len(first)
    assert not set(first) & set(other)


def test_alarms_at_a_repeated_media_time_keep_distinct_ids(tmp_path: Path) -> None:
    """A live source whose clock jumps back can raise on the same track at the same media time
    twice in one run: both events are kept."""
    with EventLog(tmp_path / "events.sqlite") as outbox:
        events = StreamEvents(outbox, "cam-1", "run-1")
        for change in (AlarmChange.RAISED, AlarmChange.CLEARED, AlarmChange.RAISED):
            events.alert(Alert(change, 3, 1.25, 0.9, 12.0))
        kept = outbox.read_after(0)
    assert [e.type for e in kept] == ["alert.raised", "alert.cleared", "alert.raised"]
    assert events.appended == 3 and len({e.id for e in kept}) == 3


def test_event_round_trips_through_its_json() -> None:
    event = Event(
        "id-1",
        EventType.ALERT_RAISED,
        datetime(2026, 1, 2, 3, 4, 5, 6000, UTC),
        "s",
        "r",
        1,
        2.5,
        0.9,
        {"cusum": 11.2},
    )
    assert Event.decode(event.encode()) == event
    assert event.to_json()["time"] == "2026-01-02T03:04:05.006Z"


SECRET = "whsec-test"
BODY = b'{"id":"abc"}'


@pytest.mark.parametrize(
    ("header", "body", "now", "error"),
    [
        (sign([SECRET], BODY, 1000)[0], BODY, 1000, None),
        (sign(["old", SECRET], BODY, 1000)[0], BODY, 1100, None),  # during a key rotation
        (sign([SECRET], BODY, 1000)[0], BODY + b" ", 1000, "does not match"),
        (sign(["other"], BODY, 1000)[0], BODY, 1000, "does not match"),
        (sign([SECRET], BODY, 1000)[0], BODY, 1000 + 301, "tolerance"),
        ("v1=abc", BODY, 1000, "no timestamp"),
        ("t=1000", BODY, 1000, "no v1"),
        ("t=soon,v1=abc", BODY, 1000, "not an integer"),
    ],
)
def test_signature_verification(header: str, body: bytes, now: float, error: str | None) -> None:
    if error is None:
        assert verify(SECRET, header, body, now=now) == 1000
    else:
        with pytest.raises(SignatureError, match=error):
            verify(SECRET, header, body, now=now)


@pytest.mark.parametrize(
    ("text", "expected", "error"),
    [
        (
            "webhook:http://127.0.0.1:9/hook?a=1;secret=s3;max_attempts=3",
            (
                "webhook",
                "http://127.0.0.1:9/hook?a=1",
                # The path, often a webhook's secret, as a digest; pinned: the name keys the
                # sink's cursor, so it must not change between releases.
                "webhook:http://127.0.0.1:9/#fe8feabfd3",
                {"secret": "s3"},
                3,
            ),
            None,
        ),
        ("jsonl:-", ("jsonl", "-", "jsonl:-", {}, 20), None),
        (
            "mqtt:mqtt://u:pw@h:1883;name=broker;qos=1",
            ("mqtt", "mqtt://u:pw@h:1883", "broker", {"qos": 1}, 20),
            None,
        ),
        ("webhook:http://h/;max_attempts=0", None, "max_attempts"),
        ("webhook:http://h/;secret", None, "key=value"),
        (":x", None, "missing `type`"),
    ],
)
def test_sink_specs(
    text: str, expected: tuple[str, str, str, dict[str, object], int] | None, error: str | None
) -> None:
    if error is not None:
        with pytest.raises(SinkConfigError, match=error):
            parse_sink(text)
        return
    assert expected is not None
    spec = parse_sink(text)
    assert (spec.type, spec.target, spec.name, dict(spec.options), spec.retry.max_attempts) == (
        expected
    )


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(backoff=1.0, max_backoff=8.0)
    # A sink refused for half a day is on its thousandth try (unavailable tries never count
    # towards max_attempts): its delay stays at the cap.
    for attempt, ceiling in [
        (1, 1.0),
        (2, 2.0),
        (3, 4.0),
        (4, 8.0),
        (9, 8.0),
        (1025, 8.0),
        (10**7, 8.0),
    ]:
        delays = [policy.delay(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) > min(delays)


def test_the_readme_verification_snippet_accepts_our_signatures() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    start = readme.index("def verify(secret: bytes")
    snippet = readme[
        readme.rindex("```python", 0, start) + len("```python") : readme.index("```", start)
    ]
    namespace: dict[str, object] = {}
    exec(snippet, namespace)
    readme_verify = namespace["verify"]
    assert callable(readme_verify)
    header, _ = sign(["old", SECRET], BODY)
    assert readme_verify(SECRET.encode(), header, BODY)
    assert not readme_verify(SECRET.encode(), header, BODY + b"x")
    assert not readme_verify(SECRET.encode(), sign([SECRET], BODY, 1000)[0], BODY)


@pytest.mark.parametrize(
    ("text", "unknown"),
    [
        ("mqtt:mqtt://broker:1883;topic=alerts/{typ}", "typ"),
        ("mqtt:mqtt://broker:1883;topic=alerts/{stream}/{0}", "0"),
        ("nats:nats://broker:4222;subject=alerts.{stream}", "stream"),
    ],
)
def test_a_topic_that_does_not_expand_is_refused_at_start(text: str, unknown: str) -> None:
    # Found only at the first event, it stopped the sink (a KeyError is no SinkError).
    with pytest.raises(SinkConfigError, match="does not expand") as refused:
        create_sink(parse_sink(text))
    assert unknown in str(refused.value)
    if text.startswith("mqtt"):  # (the nats sink needs nats-py to be made at all)
        good = text.replace("{typ}", "{type}").replace("/{0}", "/{stream}")
        assert create_sink(parse_sink(good)).name == "mqtt:mqtt://broker:1883"
