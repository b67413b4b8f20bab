"""Scenario 1, bad input: fuzzed HTTP bodies, schemathesis on ``/openapi.json``, and corrupt
stream records through the tap.

Every body is sent with a known request id; afterwards the quarantine is read back from S3 and
the index from DynamoDB, so "quarantined with a reason" and "indexed" are checked against the
backend, not against the answers. A body is *lost* when it was answered REJECTED but is not in
the quarantine with that reason and its exact bytes, or answered ACCEPTED/DUPLICATE but is not
indexed; it is *not survived* when it got a 5xx or its answer contradicts what we know about it
(a body we built invalid must be rejected with that reason, a valid one must be accepted).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from consumers.tap.binding import binding_from_table
from infra.keys import QUARANTINE_PREFIX, RAW_PREFIX
from pik.cli.schemas import demo_registry_folder
from pik.http import create_app
from pik.kit import Kit
from schemas.envelope import Reason
from schemas.kpl import KPL_MAGIC, aggregate
from schemas.registry import SchemaRegistry, encode_confluent, encode_single_object
from tests.reliability.support import Figures, quarantined, timed

ACCEPT = "accept"  # expected: ACCEPTED or DUPLICATE, and indexed
REJECT = "reject"  # expected: REJECTED, whatever the reason
UNKNOWN = "unknown"  # anything but a 5xx (random bytes could, in theory, be an event)
REASONS = {r.value for r in Reason}
SLOW_REQUEST_S = 5.0
HEALTH = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
]

# -- strategies -----------------------------------------------------------------------------------
TRICKY_IDS = [
    "../x",
    "../../etc/passwd",
    "a/b/../../c",
    "..",
    ".",
    "/",
    "%2e%2e%2f",
    "raw/source=x",
    "quarantine",
    "\x00",
    "a\x00b",
    "\x1b[31mred",
    "\u202eevil",
    "line\nbreak",
    "tab\tand\rcr",
    "\\..\\..\\windows",
    "con",
    "*",
    "?x=1&y=2",
    "💥" * 32,
    "é" * 128,
]
ids = st.one_of(
    st.sampled_from(TRICKY_IDS),
    st.text(min_size=1, max_size=48),
    st.text(alphabet=st.characters(max_codepoint=0x1F), min_size=1, max_size=8),
)


@st.composite
def times(draw: st.DrawFn) -> str:
    """RFC 3339 with an offset in whole minutes (what the contract accepts)."""
    when = draw(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9000, 1, 1)))
    minutes = draw(st.integers(-14 * 60, 14 * 60))
    if minutes == 0 and draw(st.booleans()):
        return when.isoformat() + draw(st.sampled_from(["Z", "z"]))
    sign = "+" if minutes >= 0 else "-"
    return f"{when.isoformat()}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
payloads = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
).map(lambda v: v if isinstance(v, dict) else {"v": v})


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "source": draw(ids),
        "event_type": draw(ids),
        "entity_id": draw(ids),
        "event_time": draw(times()),
        "payload": draw(payloads),
    }
    if draw(st.booleans()):
        event["idempotency_key"] = draw(ids)
    return event


BAD_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3(", b"\xe2\x82", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88"]
WRONG_TYPES: list[Any] = [None, 0, 1.5, True, [], ["x"], {}, {"a": 1}, ""]


@st.composite
def bad_bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    """A malformed body and what it must become (a ``Reason`` value, REJECT or UNKNOWN)."""
    event = draw(valid_events())
    good = json.dumps(event).encode()
    kind = draw(st.integers(0, 13))
    if kind == 0:  # invalid UTF-8 somewhere
        at = draw(st.integers(0, len(good)))
        return good[:at] + draw(st.sampled_from(BAD_UTF8)) + good[at:], Reason.INVALID_UTF8
    if kind == 1:  # nesting past the limit, in the payload or as the whole body
        depth = draw(st.integers(65, 5_000))
        if draw(st.booleans()):
            return b"[" * depth + b"]" * depth, Reason.TOO_DEEP
        inner = "[" * depth + "]" * depth
        body = json.dumps({**event, "payload": {"deep": "X"}}).replace('"X"', inner)
        return body.encode(), Reason.TOO_DEEP
    if kind == 2:  # numbers no float or int can hold
        number = draw(st.sampled_from(["1e400", "-1e999", "9" * 5_000, "-" + "1" * 4_400]))
        body = json.dumps({**event, "payload": {"n": "X"}}).replace('"X"', number)
        return body.encode(), Reason.INVALID_JSON
    if kind == 3:  # NaN and friends, anywhere a value goes
        literal = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        field = draw(st.sampled_from(["payload", "entity_id", "source"]))
        body = json.dumps({**event, field: "X"}).replace('"X"', literal)
        return body.encode(), Reason.INVALID_JSON
    if kind == 4:  # lone surrogates, escaped (the only way JSON can carry them)
        field = draw(st.sampled_from(["entity_id", "source", "event_type", "payload"]))
        half = draw(st.sampled_from(["\\ud800", "\\udfff", "\\udbff\\u0041"]))
        value = '{"k' + half + '": 1}' if field == "payload" else '"a' + half + '"'
        body = json.dumps({**event, field: "X"}).replace('"X"', value)
        return body.encode(), Reason.INVALID_JSON
    if kind == 5:  # raw control characters inside a string (JSON requires escapes)
        char = draw(st.sampled_from(["\x00", "\x01", "\x1f", "\n", "\t"]))
        body = json.dumps({**event, "entity_id": "ID"}).replace("ID", f"a{char}b")
        return body.encode(), Reason.INVALID_JSON
    if kind == 6:  # a required field of the wrong type
        field = draw(
            st.sampled_from(["source", "event_type", "entity_id", "event_time", "payload"])
        )
        wrong = draw(st.sampled_from(WRONG_TYPES))
        if field == "payload" and isinstance(wrong, dict):
            wrong = [wrong]
        return json.dumps({**event, field: wrong}).encode(), REJECT
    if kind == 7:  # a field missing
        field = draw(
            st.sampled_from(["source", "event_type", "entity_id", "event_time", "payload"])
        )
        return json.dumps({k: v for k, v in event.items() if k != field}).encode(), (
            Reason.MISSING_FIELD
        )
    if kind == 8:  # a field nobody asked for
        return json.dumps(
            {**event, draw(st.sampled_from(["extra", "", "__proto__"])): 1}
        ).encode(), (Reason.UNEXPECTED_FIELD)
    if kind == 9:  # cut off
        return good[: draw(st.integers(0, len(good) - 1))], REJECT
    if kind == 10:  # not an object
        other = draw(st.sampled_from(["[]", "[1,2]", '"text"', "42", "null", "true"]))
        return other.encode(), Reason.NOT_AN_OBJECT
    if kind == 11:  # times that are not RFC 3339 with an offset
        when = draw(
            st.sampled_from(
                ["2025-12-28 23:59:59", "2025-12-28T23:59:59", "yesterday", "", "2025-12-28"]
            )
        )
        # Not here: numeric strings ("1735430399"), accepted today (see test_bad_input.py).
        return json.dumps({**event, "event_time": when}).encode(), Reason.INVALID_TIME
    if kind == 12:  # ids past their length limit
        return json.dumps({**event, "entity_id": "x" * 257}).encode(), Reason.FIELD_TOO_LONG
    return draw(st.binary(max_size=200)), UNKNOWN


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    if draw(st.integers(0, 3)) == 0:
        return json.dumps(draw(valid_events()), ensure_ascii=draw(st.booleans())).encode(), ACCEPT
    return draw(bad_bodies())


# -- sending and checking -----------------------------------------------------------------------
@dataclass
class Answer:
    """One judged item: a single body, a batch item, or a batch refused whole."""

    raw: bytes
    expected: str
    code: int
    result: dict[str, Any]


class BodyRun:
    """Sends bodies to one app, judges each answer at once, audits the backend at the end."""

    def __init__(self, kit: Kit, client: TestClient, figures: Figures) -> None:
        self.kit = kit
        self.client = client
        self.figures = figures
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self.codes: dict[int, int] = {}
        self.reasons: dict[str, int] = {}

    def _judge(self, answer: Answer) -> bool:
        result, expected = answer.result, answer.expected
        status = result.get("status")
        pointer = result.get("archive") or {}
        if answer.code >= 500:
            self.figures.fail(f"{answer.code} for {answer.raw[:60]!r}")
            return False
        if status == "REJECTED":
            reason = result.get("reason")
            good = (
                reason in REASONS
                and answer.code in (413, 422)
                and str(pointer.get("key", "")).startswith(QUARANTINE_PREFIX + "/")
                and expected != ACCEPT
                and (expected in (REJECT, UNKNOWN) or reason == expected)
            )
        else:
            good = (
                status in ("ACCEPTED", "DUPLICATE")
                and answer.code == 200
                and str(pointer.get("key", "")).startswith(RAW_PREFIX + "/")
                and expected in (ACCEPT, UNKNOWN)
            )
        if not good:
            self.figures.fail(
                f"expected {expected}, got {answer.code} {json.dumps(result)[:200]} "
                f"for {answer.raw[:80]!r}"
            )
        return good

    def _record(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)
            self.codes[answer.code] = self.codes.get(answer.code, 0) + 1
            if answer.result.get("reason"):
                reason = str(answer.result["reason"])
                self.reasons[reason] = self.reasons.get(reason, 0) + 1
            self.figures.tried += 1
            if self._judge(answer):
                self.figures.survived += 1

    def post_one(self, raw: bytes, expected: str) -> None:
        response = self.client.post(
            "/ingest", content=raw, headers={"x-request-id": uuid.uuid4().hex}
        )
        if response.status_code == 413:
            raw = raw[: self.kit.settings.max_event_bytes]  # only the first bytes are kept
        self._record(Answer(raw, expected, response.status_code, _json(response.content)))

    def post_batch(self, items: list[tuple[bytes, str]], as_array: bool) -> None:
        if as_array:
            body = b"[" + b",".join(raw for raw, _ in items) + b"]"
        else:
            body = b"\n".join(raw for raw, _ in items)
        response = self.client.post(
            "/ingest/batch",
            content=body,
            headers={
                "x-request-id": uuid.uuid4().hex,
                "content-type": "application/json" if as_array else "application/x-ndjson",
            },
        )
        doc = _json(response.content)
        results = doc.get("results")
        if results is None:  # refused whole: one quarantined record
            whole_bad = any(exp == Reason.INVALID_UTF8 for _, exp in items) or not items
            expected = REJECT if whole_bad or as_array else UNKNOWN
            if response.status_code == 413:
                body = body[: self.kit.settings.max_body_bytes]
            self._record(Answer(body, expected, response.status_code, doc))
            return
        if response.status_code >= 500 or len(results) != len(items):
            self.figures.tried += 1
            self.figures.fail(f"batch answered {response.status_code} with {len(results)} results")
            return
        for (raw, expected), result in zip(items, results, strict=True):
            code = 200 if result.get("status") != "REJECTED" else 422
            self._record(Answer(raw, expected, code, result))

    def audit(self) -> None:
        """Quarantine and index, read back: every rejected answer is a quarantined record with
        its reason and bytes (and nothing else is), every accepted one is indexed."""
        records = {(key, pos): rec for key, pos, rec in quarantined(self.kit)}
        rejected = [a for a in self.answers if a.result.get("status") == "REJECTED"]
        lost = 0
        for answer in rejected:
            pointer = answer.result.get("archive") or {}
            rec = records.get((str(pointer.get("key")), int(pointer.get("position", -1))))
            if rec is None or rec.reason != answer.result["reason"] or rec.raw != answer.raw:
                lost += 1
                self.figures.fail(f"rejected body not quarantined as answered: {answer.raw[:60]!r}")
        if len(records) != len(rejected):
            self.figures.fail(f"{len(records)} quarantined records for {len(rejected)} rejections")
        accepted = [a for a in self.answers if a.result.get("status") in ("ACCEPTED", "DUPLICATE")]
        held = self.kit.index.lookup([str(a.result["event_id"]) for a in accepted])
        for answer in accepted:
            if answer.result["event_id"] not in held:
                lost += 1
                self.figures.fail(f"accepted body not indexed: {answer.raw[:60]!r}")
        self.figures.lost += lost
        self.figures.notes.update(
            {
                "answers_by_code": dict(sorted(self.codes.items())),
                "rejections_by_reason": dict(sorted(self.reasons.items())),
                "quarantined_records": len(records),
                "accepted_or_duplicate": len(accepted),
            }
        )


def _json(content: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(content)
    except ValueError:
        return {"unparsable_answer": content[:200].decode("utf-8", "replace")}
    return doc if isinstance(doc, dict) else {"answer": doc}


def fuzz_http(kit: Kit, *, examples: int, batch_examples: int, seed_value: int = 8) -> Figures:
    """Hypothesis-made bodies against ``/ingest`` (sent ~16 at a time, so group commit batches
    them) and ``/ingest/batch`` (NDJSON and JSON arrays of mixed items), then the audit."""
    figures = Figures("bad input: fuzzed HTTP bodies")
    app = create_app(kit)
    pool = ThreadPoolExecutor(16)
    try:
        with timed(figures), TestClient(app, raise_server_exceptions=True) as client:
            run = BodyRun(kit, client, figures)

            @seed(seed_value)
            @settings(
                max_examples=examples, deadline=None, database=None, suppress_health_check=HEALTH
            )
            @given(st.lists(bodies(), min_size=8, max_size=32))
            def singles(items: list[tuple[bytes, str]]) -> None:
                list(pool.map(lambda item: run.post_one(*item), items))

            @seed(seed_value + 1)
            @settings(
                max_examples=batch_examples,
                deadline=None,
                database=None,
                suppress_health_check=HEALTH,
            )
            @given(st.lists(bodies(), min_size=0, max_size=40), st.booleans())
            def batches(items: list[tuple[bytes, str]], as_array: bool) -> None:
                if as_array:  # only whole JSON values can be array elements
                    items = [(r, e) for r, e in items if _is_json(r)]
                else:  # NDJSON: a line is an item; blank lines are skipped
                    items = [(r, e) for r, e in items if b"\n" not in r and b"\r" not in r]
                    items = [(r, e) for r, e in items if r.strip(b" \t")]
                run.post_batch(items, as_array)

            singles()
            batches()
            _limits(run)
            run.audit()
    finally:
        pool.shutdown()
        app.state.committer.close()
    return figures


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return True


def _limits(run: BodyRun) -> None:
    """Bodies just over the limits, declared and chunked (no Content-Length): 413 and quarantined."""
    settings_ = run.kit.settings
    over_event = b'{"payload": "' + b"x" * settings_.max_event_bytes + b'"}'
    run.post_one(over_event, Reason.TOO_LARGE)
    line = json.dumps({"source": "s", "event_type": "t", "entity_id": "e", "payload": {}})
    lines = (line.encode() + b"\n") * (settings_.max_body_bytes // len(line) + 2)
    response = run.client.post("/ingest/batch", content=_chunked(lines))
    doc = _json(response.content)
    run._record(
        Answer(lines[: settings_.max_body_bytes], Reason.TOO_LARGE, response.status_code, doc)
    )


def _chunked(data: bytes, size: int = 16_384) -> Any:
    def gen() -> Any:
        for start in range(0, len(data), size):
            yield data[start : start + size]

    return gen()


# -- schemathesis -------------------------------------------------------------------------------
def schemathesis_run(kit: Kit, *, examples_per_operation: int) -> Figures:
    """Every operation of ``/openapi.json``, with schemathesis-made requests (valid and invalid
    by the schema): never a 5xx; a rejected event is quarantined (its answer points there)."""
    import schemathesis
    from schemathesis import GenerationMode

    figures = Figures("bad input: schemathesis on /openapi.json")
    app = create_app(kit)
    operations: dict[str, int] = {}
    try:
        with timed(figures):
            schema = schemathesis.openapi.from_asgi("/openapi.json", app)
            for result in schema.get_all_operations():
                operation = result.ok()  # type: ignore[union-attr]
                label = f"{operation.method.upper()} {operation.path}"
                for mode in GenerationMode:  # as the schema says, and against it
                    strategy = operation.as_strategy(generation_mode=mode)
                    try:
                        _probe(strategy, label, figures, operations, examples_per_operation)()
                    except Unsatisfiable:  # nothing can be invalid here (no parameters, no body)
                        continue
    finally:
        app.state.committer.close()
    figures.notes["requests_by_operation"] = operations
    return figures


def _probe(
    strategy: Any, label: str, figures: Figures, operations: dict[str, int], examples: int
) -> Callable[[], None]:
    @seed(len(label))  # reproducible, and hypothesis prints no seed for a skipped mode
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def call(case: Any) -> None:
        operations[label] = operations.get(label, 0) + 1
        figures.tried += 1
        started = time.monotonic()
        try:
            response = case.call(timeout=SLOW_REQUEST_S * 4)
        except Exception as exc:  # a timeout or a transport error: the app did not answer
            figures.fail(f"{label}: {type(exc).__name__}: {exc} for {_describe(case)}")
            return
        took = time.monotonic() - started
        if took > SLOW_REQUEST_S:
            slow = figures.notes.setdefault("slow_requests", [])
            slow.append(f"{took:.1f} s {label} {_describe(case)}")
        if response.status_code >= 500:
            figures.fail(f"{label}: {response.status_code} {response.text[:200]}")
            return
        is_json = "json" in response.headers.get("content-type", "")
        doc = _json(response.content) if is_json else {}
        if doc.get("status") == "REJECTED":
            key = str((doc.get("archive") or {}).get("key", ""))
            if not key.startswith(QUARANTINE_PREFIX + "/") or not doc.get("reason"):
                figures.fail(f"{label}: rejected but not quarantined: {doc}")
                return
        figures.survived += 1

    return call


def _describe(case: Any) -> str:
    try:
        return str(case.as_curl_command())[:400]
    except Exception:
        return repr(case)[:400]


# -- the tap: corrupt KPL aggregates and wrong Avro framing --------------------------------------
AVRO_ORDER = {
    "order_id": "o-1",
    "customer_id": "c-1",
    "amount_cents": 1250,
    "currency": "EUR",
    "ts": datetime(2025, 12, 29, 10, 0, tzinfo=UTC),
}


def _corrupt_kpl(rng: random.Random, good: bytes) -> bytes:
    how = rng.randrange(5)
    if how == 0:  # truncated anywhere after the magic
        return good[: rng.randrange(len(KPL_MAGIC), len(good) - 1)]
    if how == 1:  # one byte altered in the protobuf (MD5 mismatch)
        data = bytearray(good)
        at = rng.randrange(len(KPL_MAGIC), len(good) - 16)
        data[at] ^= rng.randrange(1, 256)
        return bytes(data)
    if how == 2:  # the digest altered
        data = bytearray(good)
        data[-rng.randrange(1, 17)] ^= 0x55
        return bytes(data)
    if how == 3:  # garbage framed with a correct MD5
        import hashlib

        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        return KPL_MAGIC + body + hashlib.md5(body).digest()
    return KPL_MAGIC + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))


def _bad_avro(rng: random.Random, good: bytes, confluent: bool) -> bytes:
    header = 5 if confluent else 10
    how = rng.randrange(5)
    if how == 0:  # wrong magic
        return bytes([good[0] ^ 0xFF]) + good[1:]
    if how == 1:  # a schema id / fingerprint nobody registered
        return good[: header - 1] + bytes([good[header - 1] ^ 0x5A]) + good[header:]
    if how == 2:  # truncated datum
        return good[: rng.randrange(0, len(good))]
    if how == 3:  # trailing bytes
        return good + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
    data = bytearray(good)  # a datum byte altered
    at = rng.randrange(header, len(good))
    data[at] ^= rng.randrange(1, 256)
    return bytes(data)


def tap_bad_records(kit: Kit, *, records: int, seed_value: int = 5) -> Figures:
    """Corrupt KPL aggregates on a JSON stream, and wrongly framed Avro on Confluent and
    single-object streams, each mixed with good records: the tap quarantines every bad record
    whole, with a reason and its exact bytes, and indexes every good one."""
    figures = Figures("bad input: corrupt KPL / Avro records via the tap")
    rng = random.Random(seed_value)
    registry = SchemaRegistry.load(demo_registry_folder())
    entry = registry.get("orders-service", "order_placed", 1)
    assert entry is not None
    kinesis = kit.clients.kinesis()
    expected_bad: dict[bytes, str] = {}  # raw bytes → which corruption family
    expected_good = 0
    with timed(figures):
        streams: list[tuple[str, dict[str, Any], list[bytes]]] = []
        for fmt in ("json", "avro-confluent", "avro-single-object"):
            stream = f"reliability-{fmt}-{uuid.uuid4().hex[:6]}"
            kinesis.create_stream(StreamName=stream, ShardCount=1)
            kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
            data: list[bytes] = []
            for n in range(records):
                order = {**AVRO_ORDER, "order_id": f"o-{fmt}-{n}"}
                if fmt == "json":
                    events = [
                        json.dumps(
                            {
                                "source": "reliability",
                                "event_type": "kpl",
                                "entity_id": f"k{n}",
                                "event_time": "2025-12-29T10:00:00Z",
                                "payload": {"n": n, "i": i},
                            }
                        ).encode()
                        for i in range(rng.randrange(2, 6))
                    ]
                    (agg,) = aggregate([(f"k{n}", e) for e in events])
                    good = agg.data
                    if n % 3 == 0:
                        data.append(good)
                        expected_good += len(events)
                        continue
                    bad = _corrupt_kpl(rng, good)
                else:
                    confluent = fmt == "avro-confluent"
                    good = (encode_confluent if confluent else encode_single_object)(entry, order)
                    if n % 3 == 0:
                        data.append(good)
                        expected_good += 1
                        continue
                    bad = _bad_avro(rng, good, confluent)
                data.append(bad)
                expected_bad[bad] = fmt
            for start in range(0, len(data), 500):
                kinesis.put_records(
                    StreamName=stream,
                    Records=[{"Data": d, "PartitionKey": "p"} for d in data[start : start + 500]],
                )
            binding: dict[str, Any] = {"stream": stream, "format": fmt}
            if fmt != "json":
                binding.update(entity_id="$.customer_id", event_time="$.ts")
            streams.append((stream, binding, data))
        accepted = 0
        for _stream, table, _data in streams:
            worker = kit.tap_worker(binding_from_table(table), registry=registry)
            totals = worker.run(once=True).totals()
            accepted += totals["accepted"] + totals.get("duplicates", 0)
        records_by_raw = {}
        for _key, _pos, rec in quarantined(kit):
            if rec.provenance.stream:
                records_by_raw[rec.raw] = rec
        reasons: dict[str, int] = {}
        for raw, fmt in expected_bad.items():
            figures.tried += 1
            found = records_by_raw.get(raw)
            if found is None:
                # A random alteration may, rarely, still decode to a valid record.
                figures.notes.setdefault("decoded_anyway", 0)
                figures.notes["decoded_anyway"] += 1
                figures.survived += 1
                continue
            if not found.reason:
                figures.lost += 1
                figures.fail(f"{fmt}: quarantined without a reason: {raw[:40]!r}")
                continue
            reasons[found.reason] = reasons.get(found.reason, 0) + 1
            figures.survived += 1
        figures.tried += expected_good
        figures.survived += min(accepted, expected_good)
        if accepted < expected_good:
            figures.lost += expected_good - accepted
            figures.fail(f"{expected_good - accepted} good records were not indexed")
        figures.notes.update({"good_records": expected_good, "rejections_by_reason": reasons})
    return figures


SCENARIOS: dict[str, Callable[..., Figures]] = {
    "fuzz_http": fuzz_http,
    "schemathesis": schemathesis_run,
    "tap": tap_bad_records,
}
