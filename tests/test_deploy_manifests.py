"""deploy/: the Kubernetes manifests, the compose file and Grafana's provisioning, checked offline
against the schemas the tools themselves use (no cluster, no engine, no registry)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from swapwatch.server.config import ServiceConfig
from swapwatch.server.config_sources import load_config

DEPLOY = Path(__file__).parents[1] / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose.yaml"
GRAFANA = DEPLOY / "grafana"
# The compose spec's schema as Debian's docker-compose (v1) ships it (apt docker-compose).
COMPOSE_SPEC = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")
KUBERNETES_VERSION = "1.30.0"  # the oldest release the manifests promise to fit


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


MANIFESTS = sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_fits_the_kubernetes_schema(path: Path) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for document in documents(path):
        # strict: a misspelt field (livenesProbe) is an error, not silently ignored by the API.
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_a_misspelt_field_is_caught() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = documents(KUBERNETES / "deployment.yaml")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="livenesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def resources() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for p in MANIFESTS for d in documents(p)}


def test_kustomization_applies_everything_but_the_example_secret() -> None:
    listed = documents(KUBERNETES / "kustomization.yaml")[0]["resources"]
    assert sorted(listed) == sorted(p.name for p in MANIFESTS if p.name != "secret.example.yaml")


def test_the_deployment_wires_the_token_settings_state_and_probes() -> None:
    found = resources()
    pod = found[("Deployment", "swapwatch")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    secret = found[("Secret", "swapwatch-token")]
    token = next(e for e in container["env"] if e["name"] == "SWAPWATCH_AUTH_TOKEN")
    ref = token["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == (secret["metadata"]["name"], "token")
    assert len(secret["stringData"]["token"]) >= 16  # the service refuses shorter ones
    (config,) = container["envFrom"]
    settings = found[("ConfigMap", config["configMapRef"]["name"])]["data"]
    assert all(key.startswith("SWAPWATCH_") for key in settings)
    assert "SWAPWATCH_AUTH_TOKEN" not in settings
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    claim = volumes[mounts["/var/lib/swapwatch"]]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in found
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_the_services_expose_the_http_port_and_every_rtmp_ingest_port() -> None:
    found = resources()
    (container,) = found[("Deployment", "swapwatch")]["spec"]["template"]["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    low, high = (int(n) for n in _settings()["SWAPWATCH_INGEST_RTMP_PORTS"].split(","))
    assert sorted(n for name, n in named.items() if name.startswith("rtmp")) == list(
        range(low, high + 1)
    )
    http = found[("Service", "swapwatch")]["spec"]["ports"]
    assert [(p["port"], named[p["targetPort"]]) for p in http] == [(8080, 8080)]
    rtmp = found[("Service", "swapwatch-rtmp")]["spec"]["ports"]
    # Publishers are told ingest_url's port: the Service must not renumber it.
    assert sorted((p["port"], named[p["targetPort"]]) for p in rtmp) == [
        (n, n) for n in range(low, high + 1)
    ]


def _settings() -> dict[str, str]:
    return dict(resources()[("ConfigMap", "swapwatch-settings")]["data"])


# What the image itself sets (deploy/Dockerfile) and the token, as the containers get them.
IMAGE_ENVIRONMENT = {"SWAPWATCH_HTTP_HOST": "0.0.0.0", "SWAPWATCH_AUTH_TOKEN": "x" * 32}


def accepted(environ: dict[str, str], caplog: pytest.LogCaptureFixture) -> ServiceConfig:
    """The service's configuration from these variables, which must all be current ones (a
    deprecated name loads with a warning: none is allowed here)."""
    with caplog.at_level(logging.WARNING, logger="swapwatch"):
        config = load_config(environ={**environ, **IMAGE_ENVIRONMENT})
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    return config


def test_the_configmap_settings_are_current_and_accepted(caplog: pytest.LogCaptureFixture) -> None:
    config = accepted(_settings(), caplog)
    assert config.ingest.nginx_rtmp.url is None
    assert config.ingest.rtmp.public_host == "rtmp.swapwatch.example"


def compose_spec_validator() -> Any:
    if not COMPOSE_SPEC.exists():
        pytest.skip(f"{COMPOSE_SPEC} is missing (apt-get install docker-compose)")
    import jsonschema

    schema = json.loads(COMPOSE_SPEC.read_text())
    # The top-level project name joined the spec after docker-compose 1.29 shipped this copy.
    schema["properties"]["name"] = {"type": "string"}
    return jsonschema.Draft201909Validator(schema)


def test_the_compose_file_fits_the_compose_spec() -> None:
    errors = [
        e.message for e in compose_spec_validator().iter_errors(yaml.safe_load(COMPOSE.read_text()))
    ]
    assert not errors


def test_the_compose_spec_check_catches_a_misspelt_key() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    compose["services"]["swapwatch"]["enviroment"] = {}
    assert list(compose_spec_validator().iter_errors(compose))


def test_the_compose_file_names_files_that_exist_and_keeps_the_token_out() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
        if "build" in service:
            context = DEPLOY / service["build"]["context"]
            assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file()
    swapwatch = compose["services"]["swapwatch"]
    assert "SWAPWATCH_AUTH_TOKEN" not in swapwatch["environment"]
    assert swapwatch["environment"]["SWAPWATCH_AUTH_TOKEN_FILE"] == "/run/secrets/swapwatch_token"
    assert "swapwatch_token" in swapwatch["secrets"]
    assert swapwatch["environment"]["SWAPWATCH_EVENTS_SINKS"].startswith("mqtt:mqtt://mosquitto:")


def test_the_compose_settings_are_current_and_accepted(caplog: pytest.LogCaptureFixture) -> None:
    environment = yaml.safe_load(COMPOSE.read_text())["services"]["swapwatch"]["environment"]
    # The entry point turns the _FILE variable into the token; ${...} is the compose engine's.
    environ = {k: str(v) for k, v in environment.items() if k != "SWAPWATCH_AUTH_TOKEN_FILE"}
    environ["SWAPWATCH_INGEST_RTMP_PUBLIC_HOST"] = "localhost"
    config = accepted(environ, caplog)
    assert config.ingest.nginx_rtmp.url == "rtmp://nginx-rtmp:1935"
    assert [s.split(":", 1)[0] for s in config.events.sinks] == ["mqtt"]


def test_grafana_provisions_the_prometheus_datasource_the_dashboard_uses() -> None:
    (source,) = documents(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")[0][
        "datasources"
    ]
    assert source["isDefault"] is True
    prometheus = yaml.safe_load(COMPOSE.read_text())["services"]["prometheus"]
    assert source["url"] == "http://prometheus:9090"
    assert any(p.endswith(":9090") for p in prometheus["ports"])
    dashboard = json.loads((GRAFANA / "swapwatch-dashboard.json").read_text())
    variable = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
    assert variable["query"] == source["type"]
    # Every panel reads either the variable (which picks the default source) or this source.
    allowed = {"${" + variable["name"] + "}", source["uid"]}
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] in allowed, panel["title"]
        assert panel["datasource"]["type"] == source["type"], panel["title"]


def test_grafana_loads_the_dashboard_from_the_folder_compose_mounts_it_in() -> None:
    (provider,) = documents(GRAFANA / "provisioning" / "dashboards" / "swapwatch.yml")[0][
        "providers"
    ]
    assert provider["type"] == "file"
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])  # SOURCE:TARGET[:ro]
    source, target = next((s, t) for s, t in mounts.items() if s.endswith(".json"))
    assert (DEPLOY / source).resolve() == (GRAFANA / "swapwatch-dashboard.json").resolve()
    assert Path(target).parent == Path(provider["options"]["path"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
