"""Fluentd's configuration format read in Python, and the Ruby parsing rules it relies on.

Fluentd cannot be installed here, so observability/fluentd/fluent.conf is checked by reading it:
this module parses its directives (`<source>`, `<label @X>`, `<parse>` ...) and `key value`
parameters, knows which parameters each plugin we use accepts (a misspelt one is only a warning
to Fluentd, which then runs on the default), and carries the Ruby behaviour the configuration
depends on (regular expressions, `time_format`) over to Python so the app's real lines can be
fed through it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

OPEN = re.compile(r"<(?P<name>[a-z_]+)(?:\s+(?P<arg>[^>]*))?>")
CLOSE = re.compile(r"</(?P<name>[a-z_]+)>")
PARAM = re.compile(r"(?P<key>@?[A-Za-z_][A-Za-z0-9_]*)(?:\s+(?P<value>.*))?")


@dataclass
class Directive:
    """One `<name arg>` section: its parameters in order and its nested sections."""

    name: str
    arg: str
    line: int
    params: dict[str, str] = field(default_factory=dict)
    children: list[Directive] = field(default_factory=list)

    @property
    def type(self) -> str | None:
        return self.params.get("@type")

    def sections(self, name: str) -> list[Directive]:
        return [child for child in self.children if child.name == name]

    def section(self, name: str) -> Directive:
        """The one nested section called `name` (a second one is a mistake here)."""
        (found,) = self.sections(name)
        return found

    def walk(self) -> Iterator[Directive]:
        yield self
        for child in self.children:
            yield from child.walk()

    def __str__(self) -> str:
        return f"<{self.name} {self.arg}> (line {self.line})".replace(" >", ">")


def _value(raw: str, line: int) -> str:
    """A parameter's value as Fluentd reads it: double quotes take JSON-like escapes (`#{...}`
    stays as written: Fluentd evaluates it as Ruby at load), anything else is taken as it is."""
    if raw.startswith('"'):
        if not raw.endswith('"') or len(raw) < 2:
            raise ValueError(f"line {line}: unterminated string {raw!r}")
        value: str = json.loads(raw)
        return value
    if raw.startswith("'"):
        if not raw.endswith("'") or len(raw) < 2:
            raise ValueError(f"line {line}: unterminated string {raw!r}")
        return raw[1:-1]
    if " #" in raw:
        # Fluentd's rules for a comment after an unquoted value are subtle: none in our file.
        raise ValueError(f"line {line}: comment after a value: {raw!r}")
    return raw


def parse(text: str) -> Directive:
    """The configuration as a tree under a root directive named `ROOT`."""
    root = Directive("ROOT", "", 0)
    stack = [root]
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if closing := CLOSE.fullmatch(line):
            if len(stack) == 1 or stack[-1].name != closing["name"]:
                raise ValueError(f"line {number}: {line} closes {stack[-1]}")
            stack.pop()
        elif opening := OPEN.fullmatch(line):
            section = Directive(opening["name"], (opening["arg"] or "").strip(), number)
            stack[-1].children.append(section)
            stack.append(section)
        elif param := PARAM.fullmatch(line):
            params = stack[-1].params
            if param["key"] in params:
                raise ValueError(f"line {number}: {param['key']} set twice in {stack[-1]}")
            params[param["key"]] = _value((param["value"] or "").strip(), number)
        else:
            raise ValueError(f"line {number}: not Fluentd configuration: {line!r}")
    if len(stack) != 1:
        raise ValueError(f"{stack[-1]} is never closed")
    return root


def load(path: Path) -> Directive:
    return parse(path.read_text())


# Parameters each plugin accepts, transcribed from the plugins' sources (their config_param
# declarations): fluentd v1.19 (lib/fluent/plugin/*.rb), fluent-plugin-elasticsearch 6.0,
# fluent-plugin-concat 2.6, fluent-plugin-kubernetes_metadata_filter 3.7. Only the plugins
# fluent.conf uses are here; a new one needs its list.
COMMON = {"@type", "@id", "@label", "@log_level"}
OUTPUT = {"time_as_integer", "slow_flush_log_threshold"}
PARSER = {
    "types",
    "time_key",
    "null_value_pattern",
    "null_empty_string",
    "estimate_current_event",
    "keep_time_key",
    "timeout",
    # TimeMixin::Parser
    "time_type",
    "time_format",
    "localtime",
    "utc",
    "timezone",
    "time_format_fallbacks",
}
BUFFER = {
    # output.rb's <buffer> section
    "timekey",
    "timekey_wait",
    "timekey_use_utc",
    "timekey_zone",
    "flush_at_shutdown",
    "flush_mode",
    "flush_interval",
    "flush_thread_count",
    "flush_thread_interval",
    "flush_thread_burst_interval",
    "delayed_commit_timeout",
    "overflow_action",
    "retry_forever",
    "retry_timeout",
    "retry_max_times",
    "retry_secondary_threshold",
    "retry_type",
    "retry_wait",
    "retry_exponential_backoff_base",
    "retry_max_interval",
    "retry_randomize",
    # buffer.rb
    "chunk_limit_size",
    "total_limit_size",
    "queue_limit_length",
    "chunk_limit_records",
    "chunk_full_threshold",
    "queued_chunks_limit_size",
    "compress",
    "decompression_size_limit",
    "disable_chunk_backup",
}
KNOWN_PARAMS: dict[tuple[str, str], set[str]] = {
    ("source", "tail"): {
        "path",
        "path_delimiter",
        "glob_policy",
        "tag",
        "exclude_path",
        "rotate_wait",
        "pos_file",
        "pos_file_compaction_interval",
        "read_from_head",
        "refresh_interval",
        "read_lines_limit",
        "read_bytes_limit_per_second",
        "multiline_flush_interval",
        "emit_unmatched_lines",
        "enable_watch_timer",
        "enable_stat_watcher",
        "encoding",
        "from_encoding",
        "path_key",
        "open_on_every_update",
        "limit_recently_modified",
        "skip_refresh_on_startup",
        "ignore_repeated_permission_error",
        "path_timezone",
        "follow_inodes",
        "max_line_size",
    },
    ("source", "forward"): {
        "port",
        "bind",
        "backlog",
        "linger_timeout",
        "blocking_timeout",
        "resolve_hostname",
        "deny_keepalive",
        "send_keepalive_packet",
        "chunk_size_warn_limit",
        "chunk_size_limit",
        "decompression_size_limit",
        "skip_invalid_event",
        "source_address_key",
        "source_hostname_key",
        "tag",
        "add_tag_prefix",
    },
    ("source", "monitor_agent"): {
        "bind",
        "port",
        "tag",
        "emit_interval",
        "include_config",
        "include_retry",
        "include_debug_info",
    },
    ("filter", "kubernetes_metadata"): {
        "kubernetes_url",
        "cache_size",
        "cache_ttl",
        "ignore_nil",
        "watch",
        "apiVersion",
        "client_cert",
        "client_key",
        "ca_file",
        "verify_ssl",
        "open_timeout",
        "read_timeout",
        "tag_to_kubernetes_name_regexp",
        "bearer_token_file",
        "secret_dir",
        "annotation_match",
        "stats_interval",
        "allow_orphans",
        "orphaned_namespace_name",
        "orphaned_namespace_id",
        "lookup_from_k8s_field",
        "ssl_partial_chain",
        "skip_labels",
        "skip_pod_labels",
        "skip_namespace_labels",
        "skip_container_metadata",
        "skip_master_url",
        "skip_namespace_metadata",
        "include_ownerrefs_metadata",
        "watch_retry_interval",
        "watch_retry_exponential_backoff_base",
        "watch_retry_max_times",
    },
    ("filter", "concat"): {
        "key",
        "separator",
        "n_lines",
        "multiline_start_regexp",
        "multiline_end_regexp",
        "continuous_line_regexp",
        "stream_identity_key",
        "flush_interval",
        "timeout_label",
        "use_first_timestamp",
        "partial_key",
        "partial_value",
        "keep_partial_key",
        "use_partial_metadata",
        "partial_metadata_format",
        "keep_partial_metadata",
        "use_partial_cri_logtag",
        "partial_cri_logtag_key",
        "partial_cri_stream_key",
        "buffer_limit_size",
        "buffer_overflow_method",
    },
    ("filter", "parser"): {
        "key_name",
        "reserve_data",
        "reserve_time",
        "remove_key_name_field",
        "inject_key_prefix",
        "replace_invalid_sequence",
        "hash_value_field",
        "emit_invalid_record_to_error",
    },
    ("filter", "record_transformer"): {
        "remove_keys",
        "keep_keys",
        "renew_record",
        "renew_time_key",
        "enable_ruby",
        "auto_typecast",
    },
    ("filter", "elasticsearch_genid"): {
        "hash_id_key",
        "include_tag_in_seed",
        "include_time_in_seed",
        "use_record_as_seed",
        "use_entire_record",
        "record_keys",
        "separator",
        "hash_type",
    },
    ("match", "relabel"): set(),
    ("match", "file"): OUTPUT
    | {
        "path",
        "add_path_suffix",
        "path_suffix",
        "append",
        "compress",
        "recompress",
        "symlink_path",
        "symlink_path_use_relative",
    },
    ("match", "elasticsearch"): OUTPUT
    | {
        "host",
        "port",
        "user",
        "password",
        "cloud_id",
        "cloud_auth",
        "path",
        "scheme",
        "hosts",
        "target_index_key",
        "target_type_key",
        "time_key_format",
        "time_precision",
        "include_timestamp",
        "logstash_format",
        "logstash_prefix",
        "logstash_prefix_separator",
        "logstash_dateformat",
        "utc_index",
        "type_name",
        "suppress_type_name",
        "index_name",
        "id_key",
        "write_operation",
        "parent_key",
        "routing_key",
        "request_timeout",
        "reload_connections",
        "reload_on_failure",
        "retry_tag",
        "resurrect_after",
        "time_key",
        "time_key_exclude_timestamp",
        "ssl_verify",
        "client_key",
        "client_cert",
        "client_key_pass",
        "ca_file",
        "remove_keys",
        "remove_keys_on_update",
        "remove_keys_on_update_key",
        "flatten_hashes",
        "flatten_hashes_separator",
        "template_name",
        "template_file",
        "template_overwrite",
        "customize_template",
        "rollover_index",
        "index_date_pattern",
        "index_separator",
        "deflector_alias",
        "application_name",
        "templates",
        "max_retry_putting_template",
        "fail_on_putting_template_retry_exceed",
        "fail_on_detecting_es_version_retry_exceed",
        "max_retry_get_es_version",
        "include_tag_key",
        "tag_key",
        "time_parse_error_tag",
        "reconnect_on_error",
        "pipeline",
        "with_transporter_log",
        "emit_error_for_missing_id",
        "sniffer_class_name",
        "selector_class_name",
        "reload_after",
        "content_type",
        "include_index_in_url",
        "http_backend",
        "http_backend_excon_nonblock",
        "validate_client_version",
        "prefer_oj_serializer",
        "unrecoverable_error_types",
        "verify_es_version_at_startup",
        "default_elasticsearch_version",
        "log_es_400_reason",
        "custom_headers",
        "api_key",
        "suppress_doc_wrap",
        "ignore_exceptions",
        "exception_backup",
        "bulk_message_request_threshold",
        "compression_level",
        "enable_ilm",
        "ilm_policy_id",
        "ilm_policy",
        "ilm_policies",
        "ilm_policy_overwrite",
        "truncate_caches_interval",
        "use_legacy_template",
        "catch_transport_exception_on_retry",
        "target_index_affinity",
    },
    ("parse", "regexp"): PARSER | {"expression", "ignorecase", "multiline"},
    ("parse", "json"): PARSER | {"json_parser", "stream_buffer_size"},
    ("buffer", "file"): BUFFER | {"path", "path_suffix", "file_permission", "dir_permission"},
    ("secondary", "secondary_file"): {"directory", "basename", "append", "compress"},
    ("format", "json"): {"json_parser", "add_newline", "newline"},
}
SYSTEM_PARAMS = {"log_level", "workers", "root_dir", "suppress_repeated_stacktrace"}


def unknown_params(root: Directive) -> list[str]:
    """Parameters no plugin of ours declares, as "where: name" (empty when all are known)."""
    problems = []
    for section in root.walk():
        if section.name == "record":
            continue  # <record> holds the fields record_transformer adds: any name
        if section.name in ("ROOT", "label"):
            allowed: set[str] = set()
        elif section.name == "system":
            allowed = SYSTEM_PARAMS
        else:
            known = KNOWN_PARAMS.get((section.name, section.type or ""))
            if known is None:
                problems.append(f"{section}: no parameter list for @type {section.type}")
                continue
            allowed = known | COMMON
        problems += [f"{section}: {name}" for name in section.params if name not in allowed]
    return problems


# Ruby regular expressions, as far as fluent.conf uses them.
RUBY_NAMED_GROUP = re.compile(r"\(\?<(?![=!])")


def ruby_regexp(literal: str) -> re.Pattern[str]:
    """A `/.../` Ruby literal as a Python pattern: Ruby's `(?<name>` groups are Python's
    `(?P<name>`; `\\S`, `[^ ]`, `.*`, `^` and `$` mean the same on one line without a newline."""
    match = re.fullmatch(r"/(?P<body>.*)/(?P<flags>[imx]*)", literal)
    if match is None:
        raise ValueError(f"not a Ruby regexp literal: {literal!r}")
    if match["flags"]:
        raise ValueError(f"flags {match['flags']} are not translated")
    return re.compile(RUBY_NAMED_GROUP.sub("(?P<", match["body"]))


# Ruby strptime directives as Python's, for parsing. Fluentd parses `time_format` with the
# strptime gem (C) when it can compile it, else Ruby's Time.strptime; both agree on these:
#   %Y %m %d %H %M %S  4 and 2 digits, the same in Python.
#   %N %L  the fraction's digits (the gem reads 1 to 9, scaling to nanoseconds). Python's %f reads
#          1 to 6 (microseconds): the same instant for up to 6 digits; more is refused below.
#   %z     "Z" (UTC) or +HH:MM / +HHMM: Python's %z (3.7+) accepts the same.
# Any other directive is refused, so a format change must extend this table knowingly.
RUBY_TO_PYTHON = {
    "%Y": "%Y",
    "%m": "%m",
    "%d": "%d",
    "%H": "%H",
    "%M": "%M",
    "%S": "%S",
    "%N": "%f",
    "%L": "%f",
    "%z": "%z",
}
FRACTION = re.compile(r"\.(\d+)")
# Ruby's Time.iso8601 (xmlschema), which Fluentd's `time_format %iso8601` calls.
XMLSCHEMA = re.compile(
    r"\s*(?P<date>-?\d+-\d\d-\d\d)T(?P<time>\d\d:\d\d:\d\d)(?:\.(?P<fraction>\d+))?"
    r"(?P<zone>Z|[+-]\d\d(?::?\d\d)?)?\s*",
    re.IGNORECASE,
)


def python_time_format(ruby_format: str) -> str:
    """`ruby_format` as a Python strptime format with the same meaning (see RUBY_TO_PYTHON)."""
    out, position = [], 0
    while position < len(ruby_format):
        char = ruby_format[position]
        if char != "%":
            out.append(char)
            position += 1
            continue
        directive = ruby_format[position : position + 2]
        if directive not in RUBY_TO_PYTHON:
            raise ValueError(f"{directive} in {ruby_format!r} has no Python equivalent here")
        out.append(RUBY_TO_PYTHON[directive])
        position += 2
    return "".join(out)


@dataclass(frozen=True)
class ParsedTime:
    """An instant to the nanosecond, as Fluentd's EventTime holds it."""

    when: datetime  # to the microsecond, timezone-aware
    nanoseconds: int  # the fraction of the second, in full


def parse_time(value: str, ruby_format: str, *, utc: bool = False) -> ParsedTime:
    """What Fluentd's TimeParser makes of `value` under `time_format ruby_format`.

    Without %z in the format the value carries no zone and Fluentd reads it in local time, or UTC
    with `utc true`; only the latter is supported here (a local time depends on the machine).
    """
    if ruby_format == "%iso8601":
        match = XMLSCHEMA.fullmatch(value)
        if match is None:
            raise ValueError(f"{value!r} is not xmlschema")
        zone = match["zone"] or ""
        if not zone:
            raise ValueError(f"{value!r} has no zone: Fluentd would read local time")
        offset = UTC if zone.upper() == "Z" else _offset(zone)
        base = datetime.fromisoformat(f"{match['date']}T{match['time']}").replace(tzinfo=offset)
        digits = match["fraction"] or ""
        nanoseconds = int((digits + "0" * 9)[:9])
        return ParsedTime(base + timedelta(microseconds=nanoseconds // 1000), nanoseconds)
    has_zone = "%z" in ruby_format
    if not has_zone and not utc:
        raise ValueError(f"{ruby_format!r} has no zone and utc is off: Fluentd reads local time")
    fraction = FRACTION.search(value)
    if fraction and len(fraction[1]) > 6:
        raise ValueError(f"{value!r}: more fraction digits than Python's %f reads")
    when = datetime.strptime(value, python_time_format(ruby_format))
    if not has_zone:
        when = when.replace(tzinfo=UTC)
    return ParsedTime(when, when.microsecond * 1000)


def _offset(zone: str) -> timezone:
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


# Directives the strptime gem compiles (ext/strptime/strptime.c, strptime_compile): with any
# other, Fluentd silently falls back to Ruby's Time.strptime, several times slower per line.
STRPTIME_GEM_DIRECTIVES = {f"%{c}" for c in "BHMNSYbdehmnyz"}


def time_directives(ruby_format: str) -> set[str]:
    return set(re.findall(r"%.", ruby_format)) - {"%%"}
