"""helm/minishop: the real Helm lints and renders the chart for every values file, the render is
validated against Kubernetes 1.32's schemas (kubernetes-validate, offline), and what matters is
checked against the app itself: probe paths are routes, the secrets the app reads are all there,
the migration runs before anything else, the PrometheusRule is the rules file, the shutdown
timing is gunicorn's.

Helm comes from pipelines/build-helm.sh (pipelines/test.sh runs it): a failure under CI, a skip
elsewhere, when it has not been built.
"""

from __future__ import annotations

import ast
import functools
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from minishop.config import DEV_SECRETS, Settings
from tests.ci import binary, require_binaries, unavailable

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "helm" / "minishop"
RULES_DIR = CHART / "files" / "prometheus-rules"
ENVIRONMENTS = ("dev", "test", "staging", "prod")
KUBERNETES_VERSION = "1.32.0"
# Where pipelines/build-helm.sh puts helm (the same default and variable).
HELM = (
    Path(
        os.environ.get("HELM_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "minishop/helm"
    )
    / "bin"
    / "helm"
)
KUBERNETES_VALIDATE = ROOT / ".venv" / "bin" / "kubernetes-validate"
# Every secret the app reads from its environment (minishop/config.py).
APP_SECRETS = {*DEV_SECRETS, "DATABASE_URL", "REDIS_URL"}
# Variables read besides Settings' fields: APP_ENV picks the Settings class (load_settings), the
# OpenTelemetry SDK reads its own.
OTHER_VARIABLES = re.compile(r"^(APP_ENV|OTEL_[A-Z_]+)$")
HOOK_ANNOTATION = "helm.sh/hook"
WEIGHT_ANNOTATION = "helm.sh/hook-weight"


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        unavailable(f"missing {HELM}: build it with pipelines/build-helm.sh (make test does)")
    result = subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def values_file(environment: str) -> Path:
    return CHART / f"values-{environment}.yaml"


@functools.cache
def rendered_text(environment: str) -> str:
    return helm("template", "minishop", str(CHART), "-f", str(values_file(environment))).stdout


def render_prod_with(setting: str) -> subprocess.CompletedProcess[str]:
    """`helm template` of the prod values with one `--set`, its result for the caller to judge."""
    return helm(
        "template", "x", str(CHART), "-f", str(values_file("prod")), "--set", setting, check=False
    )


def render(environment: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered_text(environment)) if doc]


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [doc for doc in kinds(docs, kind) if name is None or doc["metadata"]["name"] == name]
    return found


def server(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment", "minishop")


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod that runs the app: the server, the migration Job and each CronJob."""
    specs = {"server": server(docs)["spec"]["template"]["spec"]}
    for job in kinds(docs, "Job"):
        specs[job["metadata"]["name"]] = job["spec"]["template"]["spec"]
    for cron in kinds(docs, "CronJob"):
        specs[cron["metadata"]["name"]] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return specs


def gunicorn_graceful_timeout() -> int:
    """graceful_timeout as backend/gunicorn.conf.py sets it (read, not imported: it has effects)."""
    tree = ast.parse((ROOT / "backend" / "gunicorn.conf.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "graceful_timeout" for t in node.targets
        ):
            return int(ast.literal_eval(node.value))
    raise AssertionError("gunicorn.conf.py sets no graceful_timeout")


def test_helm_is_the_pinned_release_built_with_upstream_flags() -> None:
    assert helm("version", "--template", "{{.Version}}").stdout == "v3.22.0"
    # Chart.yaml's kubeVersion (>= 1.25) refuses the Kubernetes 1.20 that helm assumes when
    # built without upstream's -ldflags; this helm renders without --kube-version.
    helm("template", "x", str(CHART), "-f", str(values_file("dev")))
    old = helm(
        "template",
        "x",
        str(CHART),
        "-f",
        str(values_file("dev")),
        "--kube-version",
        "1.20.0",
        check=False,
    )
    assert "incompatible with Kubernetes v1.20.0" in old.stderr


def test_the_environments_have_their_values_files() -> None:
    assert sorted(p.name for p in CHART.glob("values-*.yaml")) == sorted(
        values_file(e).name for e in ENVIRONMENTS
    )


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_helm_lint_strict(environment: str) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(values_file(environment)))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_helm_lint_strict_with_the_defaults_alone() -> None:
    helm("lint", "--strict", str(CHART))


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_render_is_valid_for_kubernetes(environment: str) -> None:
    """Every object against Kubernetes' OpenAPI schema, unknown fields refused (--strict).

    The Prometheus Operator's kinds have no schema there: kubernetes-validate reports them as
    skipped, and the rules inside the PrometheusRule are compared with the rules file below.
    """
    if not KUBERNETES_VALIDATE.exists():
        unavailable(f"missing {KUBERNETES_VALIDATE}: run make dev-deps")
    result = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", KUBERNETES_VERSION, "-"],
        input=rendered_text(environment),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    validated = re.findall(r"^INFO - passed for resource", output, flags=re.MULTILINE)
    skipped = set(re.findall(r"^WARN - Couldn't find schema for kind (\w+)", output, re.MULTILINE))
    docs = render(environment)
    operator_kinds = {"ServiceMonitor", "PrometheusRule"}
    assert skipped <= operator_kinds, output
    assert len(validated) == len([d for d in docs if d["kind"] not in operator_kinds]), output


def test_kubernetes_validate_refuses_an_unknown_field() -> None:
    """The validation above can fail: one misspelt field in the render is reported."""
    if not KUBERNETES_VALIDATE.exists():
        unavailable(f"missing {KUBERNETES_VALIDATE}: run make dev-deps")
    broken = rendered_text("prod").replace("readOnlyRootFilesystem:", "readOnlyRootFilesystm:", 1)
    result = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", KUBERNETES_VERSION, "-"],
        input=broken,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "'readOnlyRootFilesystm' was unexpected" in result.stdout + result.stderr


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_probes_are_routes_of_the_app_that_answer(environment: str, session_app: Any) -> None:
    routes = {rule.rule for rule in session_app.url_map.iter_rules() if "GET" in rule.methods}
    container = server(render(environment))["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    env = {item["name"]: item.get("value") for item in container["env"]}
    probes = {name: container[name] for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    client = session_app.test_client()
    for probe in probes.values():
        path = probe["httpGet"]["path"]
        assert path in routes
        assert ports[probe["httpGet"]["port"]] == int(env["PORT"])
        assert client.get(path).status_code == 200, path


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_pod_gets_every_secret_the_app_reads(environment: str) -> None:
    docs = render(environment)
    secret_names = {doc["metadata"]["name"]: doc for doc in kinds(docs, "Secret")}
    for pod, spec in pod_specs(docs).items():
        (container,) = spec["containers"]
        refs = {
            item["name"]: item["valueFrom"]["secretKeyRef"]
            for item in container["env"]
            if "secretKeyRef" in item.get("valueFrom", {})
        }
        assert set(refs) == APP_SECRETS, pod
        for name, ref in refs.items():
            assert ref["key"] == name
            if ref["name"] in secret_names:  # the chart's Secret: the value is there
                assert secret_names[ref["name"]]["stringData"][name], (pod, name)
            else:  # an existingSecret, made outside the chart
                assert ref["name"].startswith("minishop-"), (pod, ref)


def test_only_dev_puts_secrets_in_the_chart() -> None:
    assert {s["metadata"]["name"] for s in kinds(render("dev"), "Secret")} == {
        "minishop",
        "minishop-migrate",
    }
    for environment in ("test", "staging", "prod"):
        assert not kinds(render(environment), "Secret"), environment


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_settings_are_settings_of_the_app(environment: str) -> None:
    config = one(render(environment), "ConfigMap", "minishop")["data"]
    unknown = {
        name
        for name in config
        if name not in Settings.model_fields and not OTHER_VARIABLES.match(name)
    }
    assert not unknown
    assert not APP_SECRETS & set(config)
    # YAML numbers written as numbers, not 5.24288e+06.
    for name in ("UPLOAD_MAX_BYTES", "DB_POOL_SIZE", "METRICS_PORT"):
        assert config[name].isdigit(), (name, config[name])


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_migration_hook_runs_first_with_everything_it_reads(environment: str) -> None:
    docs = render(environment)
    (job,) = kinds(docs, "Job")
    hooks = set(job["metadata"]["annotations"][HOOK_ANNOTATION].split(","))
    assert hooks == {"pre-install", "pre-upgrade"}
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] + container["args"] == [
        "flask",
        "--app",
        "minishop",
        "db",
        "upgrade",
    ]
    weight = int(job["metadata"]["annotations"][WEIGHT_ANNOTATION])
    # What the Job reads exists before it: hooks of a lower weight, or an existingSecret.
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    (config,) = container["envFrom"]
    needed = [("ConfigMap", config["configMapRef"]["name"])] + [
        ("Secret", item["valueFrom"]["secretKeyRef"]["name"])
        for item in container["env"]
        if "secretKeyRef" in item.get("valueFrom", {})
    ]
    for key in set(needed):
        if key not in by_name:
            assert key[0] == "Secret", key
            continue
        annotations = by_name[key]["metadata"].get("annotations", {})
        assert set(annotations.get(HOOK_ANNOTATION, "").split(",")) >= hooks, key
        assert int(annotations[WEIGHT_ANNOTATION]) < weight, key
    # The server itself is an ordinary resource: Helm applies it after the pre-* hooks.
    assert HOOK_ANNOTATION not in server(docs)["metadata"].get("annotations", {})


def test_cronjobs_run_the_apps_commands(session_app: Any) -> None:
    crons = {c["metadata"]["name"]: c for c in kinds(render("prod"), "CronJob")}
    expected = {
        "minishop-expire-orders": ("* * * * *", ["orders", "expire"]),
        "minishop-reconcile-payments": ("*/5 * * * *", ["payments", "reconcile"]),
        "minishop-complete-shipped": (
            "30 3 * * *",
            ["orders", "complete-shipped", "--after-days", "7"],
        ),
    }
    assert set(crons) == set(expected)
    runner = session_app.test_cli_runner()
    for name, (schedule, args) in expected.items():
        spec = crons[name]["spec"]
        assert spec["schedule"] == schedule
        assert spec["concurrencyPolicy"] == "Forbid"
        (container,) = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["flask", "--app", "minishop"]
        assert container["args"] == args
        # The command and its options exist in the app's CLI (--help parses them, runs nothing).
        result = runner.invoke(args=[*args, "--help"])
        assert result.exit_code == 0, (name, result.output)


@pytest.mark.parametrize("environment", ("staging", "prod"))
def test_prometheus_rule_is_the_rules_files(environment: str) -> None:
    rule = one(render(environment), "PrometheusRule")
    files = sorted(RULES_DIR.glob("*.yml"))
    assert [p.name for p in files] == ["alerts.yml", "recording.yml"]
    groups = [group for path in files for group in yaml.safe_load(path.read_text())["groups"]]
    assert rule["spec"] == {"groups": groups}


def test_promtool_accepts_the_prometheus_rules_groups(tmp_path: Path) -> None:
    require_binaries("promtool")
    rendered = tmp_path / "rendered.yml"
    rendered.write_text(yaml.safe_dump(one(render("prod"), "PrometheusRule")["spec"]))
    result = subprocess.run(
        [binary("promtool"), "check", "rules", str(rendered)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_loads_the_same_rules_files() -> None:
    config = yaml.safe_load((ROOT / "observability" / "prometheus" / "prometheus.yml").read_text())
    (pattern,) = config["rule_files"]
    loaded = sorted((ROOT / "observability" / "prometheus").glob(pattern))
    assert [p.resolve() for p in loaded] == sorted(RULES_DIR.glob("*.yml"))


def test_service_monitor_scrapes_the_metrics_port_as_the_rules_job() -> None:
    docs = render("prod")
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service", "minishop")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    alerts = (RULES_DIR / "alerts.yml").read_text()
    assert f'up{{job="{job}"}}' in alerts
    metrics_port = one(docs, "ConfigMap", "minishop")["data"]["METRICS_PORT"]
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == "metrics"]
    assert port["port"] == int(metrics_port)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_wechat_emulator_only_in_dev(environment: str) -> None:
    docs = render(environment)
    names = {d["metadata"]["name"] for d in docs if d["kind"] in {"Deployment", "Service"}}
    config = one(docs, "ConfigMap", "minishop")["data"]
    if environment == "dev":
        assert "minishop-wechat-emulator" in names
        assert config["WECHAT_API_BASE"] == "http://minishop-wechat-emulator:8001"
    else:
        assert not any("emulator" in name for name in names)
        assert "WECHAT_API_BASE" not in config


def test_production_values_refuse_the_emulator() -> None:
    result = render_prod_with("wechatEmulator.enabled=true")
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_pods_run_as_the_images_user_on_a_read_only_root(environment: str) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    (uid,) = re.findall(r"^USER (\d+):\d+$", dockerfile, flags=re.MULTILINE)
    docs = render(environment)
    config = one(docs, "ConfigMap", "minishop")["data"]
    for pod, spec in pod_specs(docs).items():
        assert spec["securityContext"]["runAsNonRoot"] is True, pod
        assert spec["securityContext"]["runAsUser"] == int(uid), pod
        (container,) = spec["containers"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, pod
        assert security["allowPrivilegeEscalation"] is False, pod
        assert security["capabilities"]["drop"] == ["ALL"], pod
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        env = {item["name"]: item.get("value") for item in container["env"]}
        writable = {"/tmp", config["UPLOAD_DIR"]}  # noqa: S108 (a mount point, not a file)
        if pod == "server":
            writable.add(env["PROMETHEUS_MULTIPROC_DIR"])
        assert mounts >= writable, pod
        if "WECHATPAY_PRIVATE_KEY_FILE" in config:
            key_dir = str(Path(config["WECHATPAY_PRIVATE_KEY_FILE"]).parent)
            assert key_dir in mounts, pod


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_grace_period_is_the_pause_plus_gunicorns_graceful_timeout(environment: str) -> None:
    spec = server(render(environment))["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pause = int(command[1])
    assert pause > 0
    assert spec["terminationGracePeriodSeconds"] == pause + gunicorn_graceful_timeout() + 5


@pytest.mark.parametrize("environment", ("dev", "staging", "prod"))
def test_ingress_body_cap_is_the_upload_cap(environment: str) -> None:
    docs = render(environment)
    ingress = one(docs, "Ingress")
    config = one(docs, "ConfigMap", "minishop")["data"]
    cap = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert (
        cap == config["UPLOAD_MAX_BYTES"] == str(Settings.model_fields["UPLOAD_MAX_BYTES"].default)
    )
    assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]


def test_capacity_check_refuses_more_connections_than_the_database_has() -> None:
    """prod: (4 + 4) x 2 workers x (10 + 3 surge) + 4 one-off pods x 8 = 240 <= 500 - 20."""
    fits = render_prod_with("database.maxConnections=260")
    assert fits.returncode == 0, fits.stderr
    refused = render_prod_with("database.maxConnections=259")
    assert refused.returncode != 0
    assert "database capacity" in refused.stderr
    assert "= 240 connections" in refused.stderr


def test_hpa_scales_on_cpu_and_the_optional_custom_metric() -> None:
    prod = one(render("prod"), "HorizontalPodAutoscaler")
    types = [m["type"] for m in prod["spec"]["metrics"]]
    assert types == ["Resource", "Pods"]
    assert prod["spec"]["metrics"][1]["pods"]["metric"]["name"] == "http_requests_in_flight"
    staging = one(render("staging"), "HorizontalPodAutoscaler")
    assert [m["type"] for m in staging["spec"]["metrics"]] == ["Resource"]
    assert "replicas" not in server(render("prod"))["spec"]


EDGE_CONFIG = ROOT / "deploy" / "edge" / "nginx.conf"
EDGE_ENVIRONMENTS = {"staging", "prod"}


def test_the_charts_edge_config_is_the_shipped_one() -> None:
    """The chart cannot read outside its folder: it carries deploy/edge/nginx.conf as a copy."""
    assert (CHART / "files" / "edge" / "nginx.conf").read_bytes() == EDGE_CONFIG.read_bytes()


def test_the_edges_body_cap_is_the_upload_cap() -> None:
    (cap,) = re.findall(r"^\s*client_max_body_size (\d+)m;$", EDGE_CONFIG.read_text(), re.M)
    assert int(cap) * 1024 * 1024 == Settings.model_fields["UPLOAD_MAX_BYTES"].default


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_ingress_routes_through_the_edge_where_it_is_enabled(environment: str) -> None:
    docs = render(environment)
    edge_objects = {
        (doc["kind"], doc["metadata"]["name"])
        for doc in docs
        if doc["metadata"]["name"].endswith("-edge")
    }
    routed_to = one(docs, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    config = one(docs, "ConfigMap", "minishop")["data"]
    if environment not in EDGE_ENVIRONMENTS:
        assert edge_objects == set()
        assert routed_to["name"] == "minishop"
        assert config["TRUSTED_PROXY_COUNT"] == "1"
        return
    expected = {"ConfigMap", "Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget"}
    assert edge_objects == {(kind, "minishop-edge") for kind in expected}
    budget = one(docs, "PodDisruptionBudget", "minishop-edge")["spec"]
    assert budget["selector"]["matchLabels"]["app.kubernetes.io/component"] == "edge"
    assert budget["maxUnavailable"] == 1
    assert routed_to == {"name": "minishop-edge", "port": {"name": "http"}}
    # The ingress controller and the edge: the app believes X-Forwarded-For for both hops.
    assert config["TRUSTED_PROXY_COUNT"] == "2"
    edge_config = one(docs, "ConfigMap", "minishop-edge")["data"]
    assert edge_config["nginx.conf"] == EDGE_CONFIG.read_text()
    app_service = one(docs, "Service", "minishop")
    app_port = next(p["port"] for p in app_service["spec"]["ports"] if p["name"] == "http")
    assert edge_config["edge-upstream.conf"] == f"server minishop:{app_port};\n"
    spec = one(docs, "Deployment", "minishop-edge")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    (port,) = container["ports"]
    assert edge_config["edge-listen.conf"] == f"listen {port['containerPort']};\n"
    assert container["command"][-2:] == ["-g", "daemon off;"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/__edge/healthz", "port": "http"}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/etc/nginx/edge", "/tmp"}  # noqa: S108
    edge_service = one(docs, "Service", "minishop-edge")
    assert edge_service["spec"]["selector"]["app.kubernetes.io/component"] == "edge"


@pytest.mark.parametrize("environment", sorted(EDGE_ENVIRONMENTS))
def test_only_the_edge_reaches_the_apps_port(environment: str) -> None:
    docs = render(environment)
    app_rules = one(docs, "NetworkPolicy", "minishop")["spec"]["ingress"]
    (http_rule,) = [rule for rule in app_rules if rule["ports"][0]["port"] == "http"]
    (source,) = http_rule["from"]
    assert source["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "edge"
    assert "namespaceSelector" not in source
    (edge_rule,) = one(docs, "NetworkPolicy", "minishop-edge")["spec"]["ingress"]
    assert edge_rule["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }


def test_nginx_accepts_the_rendered_edge_config(tmp_path: Path) -> None:
    require_binaries("nginx")
    edge_config = one(render("prod"), "ConfigMap", "minishop-edge")["data"]
    for name, text in edge_config.items():
        (tmp_path / name).write_text(text)
    # The Service's name resolves in the cluster only: the same line with a loopback address.
    (tmp_path / "edge-upstream.conf").write_text("server 127.0.0.1:80;\n")
    result = subprocess.run(
        [
            binary("nginx"),
            "-t",
            "-p",
            f"{tmp_path}/",
            "-e",
            "stderr",
            "-c",
            str(tmp_path / "nginx.conf"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_a_proxy_count_that_does_not_match_the_proxies_is_refused() -> None:
    refused = render_prod_with("settings.TRUSTED_PROXY_COUNT=1")
    assert refused.returncode != 0
    assert "2 proxies stand in front of the pods" in refused.stderr
    without_edge = render_prod_with("edge.enabled=false")
    assert without_edge.returncode != 0
    assert "TRUSTED_PROXY_COUNT is 2, but 1 proxies" in without_edge.stderr
