"""The log pipeline's configuration against the log lines the app really writes.

Fluentd, Elasticsearch and Kibana cannot be installed on these machines, so their configuration
in observability/ is checked here instead of run: a real gunicorn serves real traffic (a login
through the WeChat emulator, a paid order and a refunded one, a 404, refused requests, an
unexpected error), and every line it writes goes through fluent.conf's settings, replayed in
Python (tests/platform/fluentd_pipeline.py), into documents checked against the Elasticsearch
index template; the Kibana saved objects may only name fields that template maps.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Response
from flask_openapi3 import APIBlueprint

from minishop import config, create_app
from minishop.extensions import db
from minishop.models import Category, Product
from tests.api.test_payments import Buyer, answered
from tests.conftest import gunicorn_server
from tests.observability.logcheck import documented_fields, parse_lines
from tests.platform import fluentd_conf
from tests.platform.es_mapping import document_problems, field_paths, parse_date
from tests.platform.fluentd_conf import Directive, ParsedTime, parse_time
from tests.platform.fluentd_pipeline import Outcome, Pipeline, Shipped, rfc3339_nano
from wechat_emulator.testing import EmulatorControl, EmulatorProcess

OBSERVABILITY = Path(__file__).resolve().parents[3] / "observability"
FLUENT_CONF = OBSERVABILITY / "fluentd" / "fluent.conf"
INDEX_TEMPLATE = OBSERVABILITY / "elasticsearch" / "minishop-logs.index-template.json"
ILM_POLICY = OBSERVABILITY / "elasticsearch" / "minishop-logs.ilm-policy.json"
SAVED_OBJECTS = OBSERVABILITY / "kibana" / "minishop-logs.saved-objects.ndjson"

# A container log file as the kubelet names it: <pod>_<namespace>_<container>-<64 hex>.log
CONTAINER_LOG = (
    "/var/log/containers/minishop-backend-7d9c5b6f4-x2k8q_shop_backend-" + "ab12" * 16 + ".log"
)
# What the Kubernetes API would tell the metadata filter about that pod.
KUBERNETES_API = {
    "pod_id": "0f5c3a3e-7f1d-4c1e-9a57-3c2b8f1e9d10",
    "pod_ip": "10.42.1.17",
    "host": "node-3",
    "labels": {"app.kubernetes.io/name": "minishop", "pod-template-hash": "7d9c5b6f4"},
    "container_image": "registry.example.com/minishop-backend:0.1.0",
    "container_image_id": "registry.example.com/minishop-backend@sha256:" + "cd34" * 16,
    "master_url": "https://10.96.0.1:443/api",
    "namespace_id": "7a1e2b9c-0000-4000-8000-000000000001",
    "namespace_labels": {"team": "shop"},
}
FLUENTD_ENV = {"CLUSTER_NAME": "cn-east-prod", "DEPLOY_ENVIRONMENT": "production"}
# What the app prints before logging is set up, or a library writes on its own.
NOT_OUR_LINE = "Traceback (most recent call last):"

probe = APIBlueprint("log_pipeline_probe", __name__, url_prefix="/api/v1/log-pipeline-probe")


@probe.get("/boom")
def boom() -> Response:
    """An unexpected error: the app logs it with its traceback (the `exception` field)."""
    raise RuntimeError("something the code did not expect")


@dataclass(frozen=True)
class Captured:
    raw: list[str]  # each line exactly as the app wrote it
    lines: list[dict[str, Any]]


def wait_for_line(log: Path, found: Callable[[dict[str, Any]], bool], timeout: float = 30) -> None:
    """Wait until gunicorn's log holds a line for which `found` is true."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(raw) for raw in log.read_text().splitlines() if raw.startswith("{")]
        if any(found(line) for line in lines):
            return
        assert time.monotonic() < deadline, "the expected log line never came"
        time.sleep(0.2)


def a_product(session_app: Any) -> int:
    with session_app.app_context():
        category = Category(name="Log pipeline", sort=0)
        db.session.add(category)
        db.session.flush()
        product = Product(category_id=category.id, title="Pipeline tea", price_fen=3900, stock=50)
        db.session.add(product)
        db.session.commit()
        product_id: int = product.id
        return product_id


def an_order(buyer: Buyer, product_id: int) -> str:
    answer = buyer.post(
        "/api/v1/orders",
        {"items": [{"product_id": product_id, "quantity": 1}]},
        **{"Idempotency-Key": uuid.uuid4().hex},
    )
    assert answer.status_code == 201, answer.text
    order_no: str = answer.json()["data"]["order_no"]
    return order_no


def refused_by_gunicorn(base_url: str) -> None:
    """A request gunicorn cannot parse: the app never sees it, gunicorn's worker logs it."""
    parts = urlsplit(base_url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"NOT AN HTTP REQUEST\r\n\r\n")
        status_line = sock.recv(65536).split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"400", status_line


def drive(shop: str, emulator: EmulatorControl, product_id: int, log: Path) -> None:
    """Traffic that makes the app write every kind of line it has."""
    buyer = Buyer(shop, emulator)  # a login through the emulator's jscode2session
    bearer = {"Authorization": f"Bearer {buyer.session['access_token']}"}

    def get(path: str, **headers: str) -> int:
        return requests.get(f"{shop}{path}", headers=headers, timeout=30).status_code

    assert get("/api/v1/users/me", **bearer) == 200
    assert get(f"/api/v1/products/{product_id}") == 200
    assert get("/api/v1/products?page_size=5") == 200
    assert get("/api/v1/no/such/thing", **{"X-Request-ID": "log-pipeline-404"}) == 404
    assert get("/api/v1/users/me", Authorization="Bearer eyJhbGciOi.forged.x") == 401
    malformed = requests.post(
        f"{shop}/api/v1/auth/login",
        data="{not json",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert malformed.status_code == 400
    refused_by_gunicorn(shop)

    # A paid order: prepay, then WeChat Pay's signed notification.
    paid = an_order(buyer, product_id)
    assert buyer.pay(paid).status_code == 200
    assert answered(emulator, emulator.pay_succeed(paid)["notification_id"], 1) == [204]

    # Paid after the buyer cancelled: refunded in full, the refund's outcome applied.
    cancelled = an_order(buyer, product_id)
    assert buyer.pay(cancelled).status_code == 200
    assert buyer.post(f"/api/v1/orders/{cancelled}/cancel").status_code == 200
    emulator.pay_succeed(cancelled)
    wait_for_line(log, lambda line: line.get("refund_status") == "SUCCESS")


def in_process_error_lines(settings: config.TestingSettings) -> list[str]:
    """An unexpected error is not something to provoke in a correct server from outside: the
    app's own handler logs it in-process, through the same formatter as under gunicorn."""
    app = create_app(settings)
    app.register_api(probe)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # the app's handler writes to sys.stdout at the time
        answer = app.test_client().get("/api/v1/log-pipeline-probe/boom")
    assert answer.status_code == 500
    return out.getvalue().splitlines()


@pytest.fixture(scope="module")
def captured(
    settings: config.TestingSettings,
    session_app: Any,
    emulator_process: EmulatorProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Captured:
    """Every line of a gunicorn run (start, traffic, shutdown) and of an in-process error."""
    folder = tmp_path_factory.mktemp("log-pipeline")
    emulator = emulator_process.control
    emulator.reset()
    product_id = a_product(session_app)
    log = folder / "gunicorn.log"
    with gunicorn_server(settings, folder, WEB_CONCURRENCY="2") as shop:
        drive(shop, emulator, product_id, log)
    raw = log.read_text().splitlines() + in_process_error_lines(settings)
    return Captured(raw, parse_lines("\n".join(raw)))  # parse_lines checks the documented schema


@cache
def conf() -> Directive:
    return fluentd_conf.load(FLUENT_CONF)


@cache
def index_template() -> dict[str, Any]:
    template: dict[str, Any] = json.loads(INDEX_TEMPLATE.read_text())
    return template


def mappings() -> dict[str, Any]:
    found: dict[str, Any] = index_template()["template"]["mappings"]
    return found


def pipeline() -> Pipeline:
    return Pipeline(conf(), env=FLUENTD_ENV, kubernetes_api=KUBERNETES_API)


def one(sections: list[Directive]) -> Directive:
    (found,) = sections
    return found


def label(name: str) -> Directive:
    return one([s for s in conf().sections("label") if s.arg == name])


def json_parser_filter() -> Directive:
    return one([f for f in label("@MINISHOP").sections("filter") if f.type == "parser"])


def elasticsearch_output() -> Directive:
    return one([m for m in label("@MINISHOP").sections("match") if m.type == "elasticsearch"])


def line_time(line: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(line["timestamp"])


def from_kubernetes(raw: str, written_at: ParsedTime) -> Outcome:
    """`raw` as containerd writes it to the container's log file, read by Fluentd."""
    cri_line = f"{rfc3339_nano(written_at)} stdout F {raw}"
    return pipeline().container_file_line(CONTAINER_LOG, cri_line)


def through_kubernetes(raw: str, written_at: ParsedTime) -> tuple[Shipped, ...]:
    return tuple(from_kubernetes(raw, written_at).shipped)


def runtime_time(line: dict[str, Any]) -> ParsedTime:
    """When the runtime wrote the line: a little after the app did, to the nanosecond."""
    instant = line_time(line) + timedelta(microseconds=1234)
    return ParsedTime(instant, instant.microsecond * 1000 + 567)


# The captured lines ------------------------------------------------------------------------


def test_the_capture_holds_every_kind_of_line_and_every_field(captured: Captured) -> None:
    loggers = {line["logger"] for line in captured.lines}
    assert {"gunicorn.error", "minishop.access", "minishop.http_server"} <= loggers, loggers
    assert loggers - {"gunicorn.error", "minishop.access", "minishop.http_server"}, "no app line"
    assert any(line["level"] == "ERROR" and "exception" in line for line in captured.lines)
    # Every field of the schema carried a real value in at least one line, so every mapping
    # below is checked against data and not only against nulls.
    valued = {name for line in captured.lines for name, value in line.items() if value is not None}
    assert valued == set(documented_fields())


# Fluentd -----------------------------------------------------------------------------------


def test_fluent_conf_uses_only_parameters_its_plugins_declare() -> None:
    assert fluentd_conf.unknown_params(conf()) == []


def test_fluent_conf_routes_to_labels_that_exist() -> None:
    labels = {section.arg for section in conf().sections("label")}
    assert {"@KUBERNETES", "@COMPOSE", "@MINISHOP", "@ERROR"} <= labels
    for section in conf().walk():
        for name in ("@label", "timeout_label"):
            if name in section.params:
                assert section.params[name] in labels, f"{section}: {section.params[name]}"


def test_fluentd_parses_every_line_timestamp_exactly(captured: Captured) -> None:
    """The JSON parser's time settings against every real line: Fluentd drops a line whose
    time does not parse, so a mismatch here is lost logs in production."""
    parser = json_parser_filter()
    parse = parser.section("parse")
    assert parse.type == "json"
    assert parser.params["key_name"] == "log"
    assert parse.params["time_key"] == "timestamp"
    assert parse.params["keep_time_key"] == "true"  # the field stays for the index and Kibana
    time_format = parse.params["time_format"]
    utc = parse.params.get("utc") == "true"
    for line in captured.lines:
        parsed = parse_time(line["timestamp"], time_format, utc=utc)
        assert parsed.when == line_time(line), line["timestamp"]
        assert parsed.when.utcoffset() == timedelta(0)
        milliseconds = int(line["timestamp"][20:23])
        assert parsed.nanoseconds == milliseconds * 1_000_000, line["timestamp"]


def test_the_time_format_stays_on_fluentds_fast_parser() -> None:
    """Every directive is one the strptime gem compiles; else Fluentd quietly uses Ruby's."""
    time_format = json_parser_filter().section("parse").params["time_format"]
    assert fluentd_conf.time_directives(time_format) <= fluentd_conf.STRPTIME_GEM_DIRECTIVES


def test_a_timestamp_in_another_format_would_be_lost(captured: Captured) -> None:
    """The replay sees what Fluentd would do with a drifted timestamp: drop the line, leaving
    only its copy in @ERROR."""
    line = dict(captured.lines[0], timestamp="2026-11-28 17:39:58,907")
    outcome = from_kubernetes(json.dumps(line), runtime_time(captured.lines[0]))
    assert outcome.shipped == []
    ((event, why),) = outcome.errors
    assert why.startswith("invalid time format") and event.record["log"] == json.dumps(line)


def test_container_lines_are_unwrapped_to_the_app_line(captured: Captured) -> None:
    """containerd's `<time> <stream> <F|P> <line>` wrapper is split back to the app's line,
    with the runtime's time read to the nanosecond, and a line split in P pieces is joined."""
    source = pipeline().source("tail")
    assert fnmatch.fnmatch(CONTAINER_LOG, source.params["path"])
    assert source.params["pos_file"].endswith(".pos")
    parse = source.section("parse")
    expression = fluentd_conf.ruby_regexp(parse.params["expression"])
    for raw, line in zip(captured.raw, captured.lines, strict=True):
        written_at = runtime_time(line)
        match = expression.match(f"{rfc3339_nano(written_at)} stdout F {raw}")
        assert match is not None and match["log"] == raw
        assert parse_time(match[parse.params["time_key"]], parse.params["time_format"]) == (
            written_at
        )
    # A long line in two pieces comes out as the app's one line.
    raw = max(captured.raw, key=len)
    replay = pipeline()
    stamp = rfc3339_nano(runtime_time(json.loads(raw)))
    first = replay.container_file_line(CONTAINER_LOG, f"{stamp} stdout P {raw[:100]}")
    assert first.shipped == []
    (joined,) = replay.container_file_line(CONTAINER_LOG, f"{stamp} stdout F {raw[100:]}").shipped
    assert {k: joined.document[k] for k in json.loads(raw)} == json.loads(raw)


def test_every_line_ships_to_its_daily_index_with_its_own_time(captured: Captured) -> None:
    for line, raw in zip(captured.lines, captured.raw, strict=True):
        (shipped,) = through_kubernetes(raw, runtime_time(line))
        day = line_time(line).strftime("%Y.%m.%d")
        assert shipped.index == f"minishop-logs-{day}"
        assert shipped.time.when == line_time(line)  # the app's time, not the runtime's
        document = shipped.document
        assert document["timestamp"] == line["timestamp"]
        assert parse_date(document["@timestamp"], "strict_date_optional_time") == line_time(line)
        assert document["cluster"] == "cn-east-prod"
        assert document["environment"] == "production"
        assert document["kubernetes"]["namespace_name"] == "shop"
        assert "log" not in document and "_hash" not in document
        assert {k: document[k] for k in line} == line


# Elasticsearch ----------------------------------------------------------------------------


def every_shipped_document(captured: Captured) -> Iterator[dict[str, Any]]:
    """Each real line as Fluentd would index it from Kubernetes and from compose, plus a line
    that is not ours (kept whole in `log`)."""
    for line, raw in zip(captured.lines, captured.raw, strict=True):
        (kubernetes_doc,) = through_kubernetes(raw, runtime_time(line))
        yield kubernetes_doc.document
        docker_record = {
            "container_id": "ab12" * 16,
            "container_name": "/minishop_backend_1",
            "source": "stdout",
            "log": raw,
        }
        outcome = pipeline().docker_driver_record(docker_record, runtime_time(line))
        (compose_doc,) = outcome.shipped
        yield compose_doc.document
    outcome = from_kubernetes(NOT_OUR_LINE, runtime_time(captured.lines[0]))
    (not_ours,) = outcome.shipped  # kept whole, at the runtime's time
    assert not_ours.document["log"] == NOT_OUR_LINE
    assert [why for _, why in outcome.errors] == ["pattern not matched"]  # and a copy in @ERROR
    yield not_ours.document


def test_the_index_template_maps_every_field_of_every_shipped_line(captured: Captured) -> None:
    assert mappings()["dynamic"] == "strict"
    problems = set()
    for document in every_shipped_document(captured):
        problems.update(document_problems(document, mappings()))
    assert not problems, sorted(problems)


def test_a_field_the_template_does_not_know_is_refused(captured: Captured) -> None:
    """Strict mapping: an unmapped field is a refused document (Fluentd sends it to @ERROR),
    a value of the wrong type too. The checker above must see both."""
    document = next(every_shipped_document(captured))
    assert document_problems(document | {"basket_id": "b-1"}, mappings()) == [
        "basket_id: not mapped (strict: the document is refused)"
    ]
    assert document_problems(document | {"status": "200"}, mappings()) == [
        "status: integer given str '200'"
    ]


def test_the_template_maps_exactly_the_schema_and_what_fluentd_adds(captured: Captured) -> None:
    """No field left out, and none mapped that nothing sends (a typo would be both)."""
    shipped_fields = {name for doc in every_shipped_document(captured) for name in doc}
    assert set(mappings()["properties"]) == shipped_fields
    assert set(documented_fields()) <= shipped_fields


KEYWORDS = {
    "level",
    "logger",
    "service",
    "version",
    "env",
    "request_id",
    "trace_id",
    "span_id",
    "method",
    "route",
    "order_no",
    "order_status",
    "payment_status",
    "out_trade_no",
    "out_refund_no",
    "refund_status",
    "notification_id",
    "event_type",
}
TYPES_FOR = {
    (str,): {"keyword", "text", "date", "ip"},
    (int,): {"integer", "long"},
    (int, float): {"float", "double"},
}


def test_each_documented_field_has_the_type_its_use_needs() -> None:
    """Ids, enums and routes are exact-match keywords (aggregations, `field : "value"`), text is
    searched by words, numbers are numbers (ranges: status >= 500), the time is a date."""
    properties = mappings()["properties"]
    for name, (types, _nullable, _always) in documented_fields().items():
        assert properties[name]["type"] in TYPES_FOR[types], name
    assert {name for name, f in properties.items() if f["type"] == "keyword"} >= KEYWORDS
    assert properties["message"]["type"] == "text"
    assert properties["message"]["fields"]["keyword"]["type"] == "keyword"
    assert properties["exception"]["type"] == "text"
    assert properties["status"]["type"] == "integer"
    assert properties["duration_ms"]["type"] == "float"
    assert properties["user_id"]["type"] == "long"
    assert properties["timestamp"]["type"] == properties["@timestamp"]["type"] == "date"
    assert properties["client_ip"]["type"] == "ip"


def test_the_index_template_covers_the_indices_fluentd_writes() -> None:
    template = index_template()
    output = elasticsearch_output().params
    index = f"{output['logstash_prefix']}{output['logstash_prefix_separator']}2026.11.28"
    assert any(fnmatch.fnmatch(index, pattern) for pattern in template["index_patterns"])
    assert "data_stream" not in template  # daily indices, written with `create` and our own id
    assert output["write_operation"] == "create"
    filters = label("@MINISHOP").sections("filter")
    genid = one([f for f in filters if f.type == "elasticsearch_genid"])
    assert output["id_key"] == genid.params["hash_id_key"] in output["remove_keys"].split(",")


def test_the_output_buffers_on_disk_and_retries_with_a_bound() -> None:
    output = elasticsearch_output()
    buffer = output.section("buffer")
    assert buffer.type == "file" and buffer.params["path"].startswith("/var/log/fluentd/")
    assert buffer.params["overflow_action"] in ("block", "drop_oldest_chunk")
    assert buffer.params["retry_type"] == "exponential_backoff"
    assert buffer.params["retry_forever"] == "false"
    assert "retry_timeout" in buffer.params or "retry_max_times" in buffer.params
    assert "retry_max_interval" in buffer.params
    assert output.section("secondary").type == "secondary_file"
    buffer_paths = [b.params["path"] for b in conf().walk() if b.name == "buffer"]
    assert len(set(buffer_paths)) == len(buffer_paths)  # two outputs never share a buffer


ILM_PHASES = ("hot", "warm", "cold", "frozen", "delete")
# Actions each phase allows (Elasticsearch 8 ILM reference, "Index lifecycle actions").
ILM_ACTIONS = {
    "hot": {
        "set_priority",
        "unfollow",
        "rollover",
        "readonly",
        "downsample",
        "shrink",
        "forcemerge",
        "searchable_snapshot",
    },
    "warm": {
        "set_priority",
        "unfollow",
        "readonly",
        "downsample",
        "allocate",
        "migrate",
        "shrink",
        "forcemerge",
    },
    "cold": {
        "set_priority",
        "unfollow",
        "readonly",
        "downsample",
        "searchable_snapshot",
        "allocate",
        "migrate",
    },
    "frozen": {"unfollow", "searchable_snapshot"},
    "delete": {"wait_for_snapshot", "delete"},
}
DURATION = re.compile(r"(?P<amount>\d+)(?P<unit>ms|s|m|h|d)")
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> float:
    match = DURATION.fullmatch(duration)
    assert match is not None, duration
    return int(match["amount"]) * UNITS[match["unit"]]


def test_the_ilm_policy_deletes_old_days_and_matches_the_daily_indices() -> None:
    policy = json.loads(ILM_POLICY.read_text())["policy"]
    phases = policy["phases"]
    assert {"hot", "delete"} <= set(phases) <= set(ILM_PHASES)
    ages = [seconds(phases[name].get("min_age", "0ms")) for name in ILM_PHASES if name in phases]
    assert ages == sorted(ages), "phases must start in order"
    assert phases["delete"]["actions"] == {"delete": {}}
    assert seconds(phases["delete"]["min_age"]) == 30 * 86400
    for name, phase in phases.items():
        assert set(phase["actions"]) <= ILM_ACTIONS[name], name
    # Rollover needs a write alias or a data stream; Fluentd names a new index each day, so the
    # policy must not roll over (ILM would stop on "rollover alias not set").
    has_rollover = any("rollover" in phase["actions"] for phase in phases.values())
    settings = index_template()["template"]["settings"]["index"]
    assert not has_rollover
    assert "rollover_alias" not in settings.get("lifecycle", {})
    # Shrink and force-merge in hot are only allowed after a rollover.
    assert not {"shrink", "forcemerge"} & set(phases["hot"]["actions"])
    # The template names this policy; the policy's install path names it the same.
    assert settings["lifecycle"]["name"] == "minishop-logs"
    assert policy["_meta"]["install"] == "PUT _ilm/policy/minishop-logs"


# Kibana -----------------------------------------------------------------------------------


@cache
def saved_objects() -> list[dict[str, Any]]:
    lines = SAVED_OBJECTS.read_text().splitlines()
    assert all(lines), "an empty line in the NDJSON"
    return [json.loads(line) for line in lines]


def by_type(kind: str) -> list[dict[str, Any]]:
    return [o for o in saved_objects() if o["type"] == kind]


def search_source(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["attributes"]["kibanaSavedObjectMeta"]
    source: dict[str, Any] = json.loads(meta["searchSourceJSON"])
    return source


KQL_FIELD = re.compile(r"(?P<field>[A-Za-z_@][\w.@]*)\s*(?::|<=|>=|<|>)")
KQL_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def kql_fields(query: str) -> set[str]:
    """The fields a KQL query names (`field : value`, `field >= n`), quoted values aside."""
    return set(KQL_FIELD.findall(KQL_STRING.sub('""', query)))


def test_saved_objects_are_kibana_8_import_records() -> None:
    """The shape Kibana 8's saved-objects import reads: one object per line with id, type,
    attributes and references; JSON-in-string attributes that parse; references that resolve
    inside the file; panel references named `<panelIndex>:panel_<panelIndex>` as Kibana 8
    writes them. 8.0.0 migration versions are accepted, then migrated, by every 8.x."""
    objects = saved_objects()
    keys = {(o["type"], o["id"]) for o in objects}
    assert len(keys) == len(objects)
    assert {o["type"] for o in objects} == {"index-pattern", "search", "dashboard"}
    for obj in objects:
        assert obj["coreMigrationVersion"] == "8.0.0"
        assert obj["migrationVersion"] == {obj["type"]: "8.0.0"}
        for reference in obj["references"]:
            assert (reference["type"], reference["id"]) in keys, reference
    (data_view,) = by_type("index-pattern")
    for name in ("fields", "fieldFormatMap", "runtimeFieldMap", "sourceFilters"):
        json.loads(data_view["attributes"][name])
    for search in by_type("search"):
        source = search_source(search)
        (reference,) = [r for r in search["references"] if r["name"] == source["indexRefName"]]
        assert reference == {
            "name": "kibanaSavedObjectMeta.searchSourceJSON.index",
            "type": "index-pattern",
            "id": data_view["id"],
        }
        assert source["query"]["language"] == "kuery"
    (dashboard,) = by_type("dashboard")
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    json.loads(dashboard["attributes"]["optionsJSON"])
    search_source(dashboard)
    references = {r["name"]: (r["type"], r["id"]) for r in dashboard["references"]}
    assert len(references) == len(dashboard["references"]) == len(panels)
    for panel in panels:
        assert panel["panelRefName"] == f"panel_{panel['panelIndex']}"
        assert panel["gridData"]["i"] == panel["panelIndex"]
        kind, _ = references[f"{panel['panelIndex']}:{panel['panelRefName']}"]
        assert kind == panel["type"] == "search"
    assert {i for _, i in references.values()} == {s["id"] for s in by_type("search")}


def test_kibana_looks_at_the_indices_fluentd_writes_by_the_mapped_time() -> None:
    (data_view,) = by_type("index-pattern")
    title = data_view["attributes"]["title"]
    assert title in index_template()["index_patterns"]
    assert fnmatch.fnmatch("minishop-logs-2026.11.28", title)
    time_field = data_view["attributes"]["timeFieldName"]
    assert mappings()["properties"][time_field]["type"] == "date"


def test_saved_objects_name_only_mapped_fields() -> None:
    mapped = dict(field_paths(mappings()))
    named: dict[str, set[str]] = {}
    for search in by_type("search"):
        attributes = search["attributes"]
        fields = set(attributes["columns"]) | {column for column, _ in attributes["sort"]}
        fields |= kql_fields(search_source(search)["query"]["query"])
        named[search["id"]] = fields
    (dashboard,) = by_type("dashboard")
    named[dashboard["id"]] = kql_fields(search_source(dashboard)["query"]["query"])
    (data_view,) = by_type("index-pattern")
    named[data_view["id"]] = {data_view["attributes"]["timeFieldName"]}
    unmapped = {(owner, name) for owner, fields in named.items() for name in fields} - {
        (owner, name) for owner, fields in named.items() for name in fields if name in mapped
    }
    assert not unmapped
    sorts = [s["attributes"]["sort"] for s in by_type("search")]
    assert all(mapped[column]["type"] == "date" for sort in sorts for column, _ in sort)


def test_there_is_a_saved_search_by_trace_user_and_order() -> None:
    queried = {
        name: search["id"]
        for search in by_type("search")
        for name in kql_fields(search_source(search)["query"]["query"])
    }
    assert {"trace_id", "user_id", "order_no"} <= set(queried)
    for name in ("trace_id", "user_id", "order_no"):
        (search,) = [s for s in by_type("search") if s["id"] == queried[name]]
        assert name in search["attributes"]["columns"]


def test_kql_field_extraction_sees_through_values() -> None:
    """The extraction the checks above rely on."""
    assert kql_fields('level : ("ERROR" or "CRITICAL") or status >= 500') == {"level", "status"}
    assert kql_fields('message : "order_no : 1" and trace_id : *') == {"message", "trace_id"}
