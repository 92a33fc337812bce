"""fluent.conf's event flow replayed in Python, so the app's real lines can go through it.

Fluentd cannot run here. This follows what each directive of fluent.conf does to one event, as
the plugins' sources do it (cited per step), driven by the configuration itself: the labels,
filters and matches are read from the file, in order, with their parameters. A plugin type or
parameter value it has not been taught is an error, never silently skipped, so a change to
fluent.conf that this replay cannot follow fails the test instead of passing untested.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.platform.fluentd_conf import Directive, ParsedTime, parse_time, ruby_regexp

# The tag regexp fluent-plugin-kubernetes_metadata_filter uses for /var/log/containers files
# (REGEX_VAR_LOG_CONTAINERS in filter_kubernetes_metadata.rb).
KUBERNETES_TAG = ruby_regexp(
    r"/(var\.log\.containers)\.(?<pod_name>[a-z0-9]([-a-z0-9]*[a-z0-9])?"
    r"(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)_(?<namespace>[^_]+)_(?<container_name>.+)"
    r"-(?<docker_id>[a-z0-9]{64})\.log$/"
)
EMBEDDED_ENV = re.compile(r"#\{ENV\['(?P<name>\w+)'\](?: \|\| '(?P<default>[^']*)')?\}")


@dataclass
class Event:
    tag: str
    time: ParsedTime
    record: dict[str, Any]


@dataclass
class Shipped:
    """A document the Elasticsearch output would send, and to which index."""

    index: str
    document: dict[str, Any]
    time: ParsedTime


@dataclass
class Outcome:
    shipped: list[Shipped] = field(default_factory=list)
    errors: list[tuple[Event, str]] = field(default_factory=list)  # what reaches @ERROR, and why


def ruby_string(value: str, env: Mapping[str, str]) -> str:
    """A double-quoted value with `#{ENV['X'] || 'default'}` evaluated, as Fluentd does at load."""
    result = EMBEDDED_ENV.sub(lambda m: env.get(m["name"]) or m["default"] or "", value)
    if "#{" in result:
        raise ValueError(f"embedded Ruby in {value!r} is not understood here")
    return result


def tag_matches(patterns: str, tag: str) -> bool:
    """Fluentd's <match>/<filter> patterns: `*` is one tag part, `**` any number of parts."""
    for pattern in patterns.split():
        regex = re.escape(pattern).replace(r"\*\*", "DOUBLE").replace(r"\*", r"[^.]+")
        regex = regex.replace(r"\.DOUBLE", r"(?:\..+)?").replace("DOUBLE", ".*")
        if re.fullmatch(regex, tag):
            return True
    return False


def rfc3339_nano(time: ParsedTime) -> str:
    """A time as Go's RFC3339Nano writes it (containerd's log lines): trailing zeros dropped."""
    fraction = f"{time.nanoseconds:09d}".rstrip("0")
    return time.when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{fraction}Z" if fraction else "Z"
    )


def ruby_iso8601(time: ParsedTime, digits: int) -> str:
    """Ruby's DateTime#iso8601(digits) in UTC, which fluent-plugin-elasticsearch writes as
    @timestamp (the fraction is truncated, not rounded)."""
    fraction = f"{time.nanoseconds:09d}"[:digits]
    stamp = time.when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction}+00:00" if digits else f"{stamp}+00:00"


def truthy(value: str | None) -> bool:
    if value in (None, "false"):
        return False
    if value == "true":
        return True
    raise ValueError(f"not a Fluentd boolean: {value!r}")


class Pipeline:
    """fluent.conf's flow for one event at a time. `kubernetes_api` is what the API server would
    say about the pod (the metadata filter's lookup); `env` is the Fluentd process environment."""

    def __init__(
        self, conf: Directive, *, env: Mapping[str, str], kubernetes_api: Mapping[str, Any]
    ) -> None:
        self.conf = conf
        self.env = env
        self.kubernetes_api = kubernetes_api
        self.labels = {label.arg: label for label in conf.sections("label")}
        self.buffers: dict[str, list[Event]] = {}

    def source(self, plugin: str) -> Directive:
        (found,) = [s for s in self.conf.sections("source") if s.type == plugin]
        return found

    # Sources -----------------------------------------------------------------------------

    def container_file_line(self, path: str, line: str) -> Outcome:
        """One line of a container log file, read by the `tail` source."""
        source = self.source("tail")
        assert fnmatch.fnmatch(path, source.params["path"]), (path, source.params["path"])
        # in_tail: `*` in the tag becomes the file's path with / as . (leading / dropped).
        tag = source.params["tag"].replace("*", path.lstrip("/").replace("/", "."))
        outcome = Outcome()
        parse = source.section("parse")
        if parse.type != "regexp":
            raise ValueError(f"tail parser {parse.type} is not replayed")
        match = ruby_regexp(parse.params["expression"]).match(line)
        if match is None:
            outcome.errors.append((Event(tag, _now(), {"message": line}), "pattern not matched"))
            return outcome  # in_tail drops it (emit_unmatched_lines is off)
        record = {k: v for k, v in match.groupdict().items() if v is not None}
        time = self._take_time(record, parse)
        self.run(source.params["@label"], Event(tag, time, record), outcome)
        return outcome

    def docker_driver_record(self, record: dict[str, Any], time: ParsedTime) -> Outcome:
        """A record from Docker's fluentd log driver, received by the `forward` source."""
        source = self.source("forward")
        outcome = Outcome()
        self.run(source.params["@label"], Event("compose.minishop", time, dict(record)), outcome)
        return outcome

    # Routing -----------------------------------------------------------------------------

    def run(self, label_name: str, event: Event, outcome: Outcome) -> None:
        """The event through one <label>: its filters in order, then the first matching match."""
        label = self.labels[label_name]
        events = [event]
        for directive in label.children:
            if not tag_matches(directive.arg, event.tag):
                continue
            if directive.name == "filter":
                events = [out for one in events for out in self.filter(directive, one, outcome)]
            elif directive.name == "match":
                for one in events:
                    self.output(directive, one, outcome)
                return
        raise AssertionError(f"no <match> for {event.tag} in <label {label_name}>")

    def filter(self, directive: Directive, event: Event, outcome: Outcome) -> list[Event]:
        handler = getattr(self, f"filter_{directive.type}", None)
        if handler is None:
            raise ValueError(f"{directive}: filter @type {directive.type} is not replayed")
        result: list[Event] = handler(directive.params, directive, event, outcome)
        return result

    def output(self, directive: Directive, event: Event, outcome: Outcome) -> None:
        if directive.type == "relabel":
            self.run(directive.params["@label"], event, outcome)
        elif directive.type == "elasticsearch":
            outcome.shipped.append(self.elasticsearch(directive.params, event))
        else:
            raise ValueError(f"{directive}: output @type {directive.type} is not replayed")

    # Filters -----------------------------------------------------------------------------

    def filter_kubernetes_metadata(
        self, params: dict[str, str], _d: Directive, event: Event, _o: Outcome
    ) -> list[Event]:
        """get_metadata_for_record: names from the tag, the rest from the API server."""
        match = KUBERNETES_TAG.search(event.tag)
        if match is None:
            return [event]
        api = dict(self.kubernetes_api)
        kubernetes = {
            "container_name": match["container_name"],
            "namespace_name": match["namespace"],
            "pod_name": match["pod_name"],
            "pod_id": api.pop("pod_id"),
            "pod_ip": api.pop("pod_ip"),
            "host": api.pop("host"),
        }
        if not truthy(params.get("skip_labels")) and not truthy(params.get("skip_pod_labels")):
            kubernetes["labels"] = api.pop("labels")
        if not truthy(params.get("skip_container_metadata")):
            kubernetes["container_image"] = api.pop("container_image")
            kubernetes["container_image_id"] = api.pop("container_image_id")
        if not truthy(params.get("skip_master_url")):
            kubernetes["master_url"] = api.pop("master_url")
        if not truthy(params.get("skip_namespace_metadata")):
            kubernetes["namespace_id"] = api.pop("namespace_id")
            kubernetes["namespace_labels"] = api.pop("namespace_labels")
        record = event.record | {
            "docker": {"container_id": match["docker_id"]},
            "kubernetes": kubernetes,
        }
        return [Event(event.tag, event.time, record)]

    def filter_concat(
        self, params: dict[str, str], directive: Directive, event: Event, _o: Outcome
    ) -> list[Event]:
        """filter_concat's partial_cri and partial_metadata modes (filter_stream, flush_buffer)."""
        key = params["key"]
        if key not in event.record:
            return [event]
        separator = params.get("separator", "\n")
        if truthy(params.get("use_partial_cri_logtag")):
            logtag_key = params["partial_cri_logtag_key"]
            stream_key = params.get("partial_cri_stream_key", "stream")
            buffer = self.buffers.setdefault(f"{directive.line}:{event.tag}", [])
            buffer.append(event)
            if event.record[logtag_key].split(":")[0] != "F":
                return []
            first = buffer[0].record | {key: separator.join(e.record[key] for e in buffer)}
            buffer.clear()
            first.pop(logtag_key, None)
            merged = event.record | first
            merged.pop(logtag_key, None)
            merged.pop(stream_key, None)
            return [Event(event.tag, event.time, merged)]
        if truthy(params.get("use_partial_metadata")):
            if "partial_message" not in event.record:
                return [event]
            raise ValueError("partial docker records are not replayed")
        raise ValueError(f"{directive}: concat mode is not replayed")

    def filter_record_transformer(
        self, params: dict[str, str], directive: Directive, event: Event, _o: Outcome
    ) -> list[Event]:
        if truthy(params.get("enable_ruby")) or params.keys() - {"@type", "@id", "remove_keys"}:
            raise ValueError(f"{directive}: only <record> and remove_keys are replayed")
        record = dict(event.record)
        for record_section in directive.sections("record"):
            for name, value in record_section.params.items():
                record[name] = ruby_string(value, self.env)
        for name in params.get("remove_keys", "").split(","):
            record.pop(name.strip(), None)
        return [Event(event.tag, event.time, record)]

    def filter_parser(
        self, params: dict[str, str], directive: Directive, event: Event, outcome: Outcome
    ) -> list[Event]:
        """filter_parser.rb's filter_stream / filter_one_record with parser_json.rb."""
        parse = directive.section("parse")
        if parse.type != "json":
            raise ValueError(f"{directive}: parser {parse.type} is not replayed")
        key = params["key_name"]
        reserve = truthy(params.get("reserve_data"))
        to_error = truthy(params.get("emit_invalid_record_to_error", "true"))
        if key not in event.record:
            if to_error:
                outcome.errors.append((event, f"{key} does not exist"))
            return [event] if reserve else []
        try:
            values = json.loads(event.record[key])
        except ValueError:
            values = None
        if not isinstance(values, dict):
            if to_error:
                outcome.errors.append((event, "pattern not matched"))
            return [event] if reserve else []
        try:
            time = self._take_time(values, parse)
        except ValueError as exc:  # a ParserError: the event is dropped, only @ERROR sees it
            if to_error:
                outcome.errors.append((event, f"invalid time format: {exc}"))
            return []
        record = dict(event.record)
        if truthy(params.get("remove_key_name_field")):
            record.pop(key)
        merged = record | values if reserve else values
        if truthy(params.get("reserve_time")):
            time = event.time
        return [Event(event.tag, time, merged)]

    def filter_elasticsearch_genid(
        self, params: dict[str, str], directive: Directive, event: Event, _o: Outcome
    ) -> list[Event]:
        if truthy(params.get("use_record_as_seed")):
            raise ValueError(f"{directive}: record seeds are not replayed")
        record = event.record | {params.get("hash_id_key", "_hash"): uuid.uuid4().hex}
        return [Event(event.tag, event.time, record)]

    # Output ------------------------------------------------------------------------------

    def elasticsearch(self, params: dict[str, str], event: Event) -> Shipped:
        """out_elasticsearch.rb process_message: index name, @timestamp, _id, remove_keys."""
        if not truthy(params.get("logstash_format")):
            raise ValueError("only logstash_format (daily indices) is replayed")
        if params.get("time_key") or params.get("target_index_key"):
            raise ValueError("time_key / target_index_key are not replayed")
        record = copy.deepcopy(event.record)
        if "@timestamp" not in record:
            record["@timestamp"] = ruby_iso8601(event.time, int(params.get("time_precision", 9)))
        if not truthy(params.get("utc_index", "true")):
            raise ValueError("local-time index names depend on the machine: not replayed")
        day_format = params.get("logstash_dateformat", "%Y.%m.%d")
        day = event.time.when.astimezone(UTC).strftime(day_format)
        prefix = params.get("logstash_prefix", "logstash")
        index = f"{prefix}{params.get('logstash_prefix_separator', '-')}{day}".lower()
        if truthy(params.get("include_tag_key")):
            record[params.get("tag_key", "tag")] = event.tag
        id_key = params.get("id_key")
        if id_key:
            assert id_key in record, f"{id_key} missing: `create` would drop the record"
        for name in params.get("remove_keys", "").split(","):
            record.pop(name.strip(), None)
        return Shipped(index, record, event.time)

    # Time --------------------------------------------------------------------------------

    def _take_time(self, record: dict[str, Any], parse: Directive) -> ParsedTime:
        """Parser#parse_time: the time_key's value parsed and, unless keep_time_key, removed."""
        time_key = parse.params.get("time_key", "time")  # both parsers' config_set_default
        if time_key not in record:
            return _now()
        keep = truthy(parse.params.get("keep_time_key"))
        value = record[time_key] if keep else record.pop(time_key)
        # json defaults time_type to float unless time_format is set; string times only here
        if "time_format" not in parse.params or parse.params.get("time_type", "string") != "string":
            raise ValueError("only string times with a time_format are replayed")
        return parse_time(value, parse.params["time_format"], utc=truthy(parse.params.get("utc")))


def _now() -> ParsedTime:
    """The event time Fluentd gives an event whose own time is missing (estimate_current_event)."""
    now = datetime.now(UTC)
    return ParsedTime(now, now.microsecond * 1000)
