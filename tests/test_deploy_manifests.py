"""deploy/: the Kubernetes manifests, the compose file and Grafana's provisioning, checked offline
against the schemas the tools themselves use (no cluster, no engine, no registry)."""

from __future__ import annotations

import json
import logging
import shlex
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


# The cluster on Ray (deploy/kubernetes/cluster): core kinds as above, the RayCluster's pod
# templates as Pods, and the RayCluster's own fields against the KubeRay v1 fields it uses.
CLUSTER = KUBERNETES / "cluster"
CLUSTER_MANIFESTS = sorted(p for p in CLUSTER.glob("*.yaml") if p.name != "kustomization.yaml")
CORE_CLUSTER_MANIFESTS = [p for p in CLUSTER_MANIFESTS if p.name != "raycluster.yaml"]


def closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """An object with exactly these fields known: a misspelt one is an error."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
# The template itself is checked as a Pod by kubernetes-validate.
POD_TEMPLATE = closed({"metadata": {"type": "object"}, "spec": {"type": "object"}}, ("spec",))
# KubeRay v1's RayCluster (ray.io/v1, KubeRay 1.1+), the fields deploy/ fills in.
RAY_CLUSTER_SCHEMA = closed(
    {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayCluster"},
        "metadata": closed(
            {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": STRING_MAP,
                "annotations": STRING_MAP,
            },
            ("name", "namespace"),
        ),
        "spec": closed(
            {
                "rayVersion": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
                "enableInTreeAutoscaling": {"type": "boolean"},
                "autoscalerOptions": closed(
                    {
                        "upscalingMode": {"enum": ["Default", "Aggressive", "Conservative"]},
                        "idleTimeoutSeconds": {"type": "integer", "minimum": 0},
                        "resources": {"type": "object"},  # a container's, checked below
                        "securityContext": {"type": "object"},  # likewise
                        "image": {"type": "string"},
                        "imagePullPolicy": {"type": "string"},
                    }
                ),
                "headGroupSpec": closed(
                    {
                        "serviceType": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                        "rayStartParams": STRING_MAP,
                        "template": POD_TEMPLATE,
                    },
                    ("rayStartParams", "template"),
                ),
                "workerGroupSpecs": {
                    "type": "array",
                    "minItems": 1,
                    "items": closed(
                        {
                            "groupName": {"type": "string"},
                            "replicas": {"type": "integer", "minimum": 0},
                            "minReplicas": {"type": "integer", "minimum": 0},
                            "maxReplicas": {"type": "integer", "minimum": 1},
                            "rayStartParams": STRING_MAP,
                            "template": POD_TEMPLATE,
                        },
                        ("groupName", "rayStartParams", "template"),
                    ),
                },
            },
            ("rayVersion", "headGroupSpec", "workerGroupSpecs"),
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)


def ray_cluster() -> dict[str, Any]:
    (document,) = documents(CLUSTER / "raycluster.yaml")
    return document


def ray_pod_templates(cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = cluster["spec"]
    groups = {f"worker:{g['groupName']}": g for g in spec["workerGroupSpecs"]}
    return {"head": spec["headGroupSpec"], **groups}


def ray_cluster_errors(cluster: dict[str, Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(RAY_CLUSTER_SCHEMA)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(cluster)]


@pytest.mark.parametrize("path", CORE_CLUSTER_MANIFESTS, ids=lambda p: p.name)
def test_every_cluster_manifest_of_a_core_kind_fits_the_kubernetes_schema(path: Path) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for document in documents(path):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("group", ["head", "worker:streams"])
def test_each_ray_pod_template_fits_the_kubernetes_schema_as_a_pod(group: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    template = ray_pod_templates(ray_cluster())[group]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, **template}
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    # The autoscaler's container settings are a container's too.
    options = ray_cluster()["spec"]["autoscalerOptions"]
    container = {"name": "autoscaler", "image": "i", **options}
    for field in ("upscalingMode", "idleTimeoutSeconds"):
        del container[field]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    pod["spec"] = {"containers": [container]}
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


def test_the_ray_cluster_fits_the_kuberay_fields_it_uses() -> None:
    assert ray_cluster_errors(ray_cluster()) == []


@pytest.mark.parametrize(
    ("where", "misspelt"),
    [
        (("spec",), "enableInTreeAutoScaling"),
        (("spec", "headGroupSpec"), "rayStartParam"),
        (("spec", "workerGroupSpecs", 0), "maxReplica"),
        (("spec", "autoscalerOptions"), "idleTimeoutSecond"),
    ],
)
def test_a_misspelt_ray_cluster_field_is_caught(
    where: tuple[str | int, ...], misspelt: str
) -> None:
    cluster = ray_cluster()
    node: Any = cluster
    for key in where:
        node = node[key]
    node[misspelt] = node.get(misspelt, 1)
    errors = ray_cluster_errors(cluster)
    assert any(misspelt in e for e in errors), errors


def test_a_misspelt_field_in_a_ray_pod_template_is_caught() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    template = ray_pod_templates(ray_cluster())["worker:streams"]["template"]
    template["spec"]["containers"][0]["readinesProbe"] = {}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, **template}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


def cluster_resources() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for p in CLUSTER_MANIFESTS for d in documents(p)}


def declared_resources(group: dict[str, Any]) -> dict[str, float]:
    """rayStartParams' resources as `ray start` gets them: KubeRay puts the value into a shell
    command line as it is (`--resources=VALUE`), so it is quoted for the shell."""
    (value,) = shlex.split(group["rayStartParams"].get("resources", "{}"))
    parsed: dict[str, float] = json.loads(value)
    return parsed


def test_the_ray_cluster_offers_what_the_fronts_cluster_settings_ask_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    found = cluster_resources()
    config = accepted(dict(found[("ConfigMap", "swapwatch-settings")]["data"]), caplog).cluster
    cluster = ray_cluster()
    head = cluster["spec"]["headGroupSpec"]
    (workers,) = cluster["spec"]["workerGroupSpecs"]

    # Streams go only to the workers, each filling its CPUs with as many slots as it has.
    assert config.stream_resource is not None
    assert config.stream_resource not in declared_resources(head)
    slots = declared_resources(workers)[config.stream_resource]
    assert slots >= 1
    assert float(workers["rayStartParams"]["num-cpus"]) == slots * config.stream_cpus
    (worker_container,) = workers["template"]["spec"]["containers"]
    assert float(worker_container["resources"]["limits"]["cpu"]) >= slots * config.stream_cpus
    # max_streams is what the group holds at its largest.
    assert config_limits(found, caplog).max_streams == workers["maxReplicas"] * slots

    # The detector fits the head, the one node with its resource.
    assert config.detector_resource is not None
    assert declared_resources(head) == {config.detector_resource: 1}
    assert config.detector_cpus <= float(head["rayStartParams"]["num-cpus"])
    assert config.detector_resource not in declared_resources(workers)

    # The front reaches the head's Service (KubeRay's name for it) on the Ray Client port.
    assert config.address == f"ray://{cluster['metadata']['name']}-head-svc:10001"
    (head_container,) = head["template"]["spec"]["containers"]
    assert 10001 in {p["containerPort"] for p in head_container["ports"]}


def config_limits(
    found: dict[tuple[str, str], dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> Any:
    return accepted(dict(found[("ConfigMap", "swapwatch-settings")]["data"]), caplog).limits


def test_the_cluster_kustomization_applies_everything_but_the_example_secret() -> None:
    listed = documents(CLUSTER / "kustomization.yaml")[0]["resources"]
    assert sorted(listed) == sorted(
        p.name for p in CLUSTER_MANIFESTS if p.name != "secret.example.yaml"
    )


def test_the_front_alone_holds_the_outbox_and_everything_shares_one_namespace() -> None:
    found = cluster_resources()
    (namespace,) = [name for kind, name in found if kind == "Namespace"]
    assert all(
        d["metadata"]["namespace"] == namespace
        for (kind, _), d in found.items()
        if kind != "Namespace"
    )
    front = found[("Deployment", "swapwatch")]["spec"]["template"]["spec"]
    (container,) = front["containers"]
    token = next(e for e in container["env"] if e["name"] == "SWAPWATCH_AUTH_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "swapwatch-token", "key": "token"}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in front["volumes"]}
    claim = volumes[mounts["/var/lib/swapwatch"]]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in found
    # No Ray pod mounts a claim: what a worker makes is recorded only once the front commits it.
    for group, spec in ray_pod_templates(ray_cluster()).items():
        pod = spec["template"]["spec"]
        assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v], group
        assert pod["securityContext"]["runAsNonRoot"] is True, group
        for ray_container in pod["containers"]:
            assert ray_container["image"] == container["image"], group  # one image for all
            assert {"readinessProbe", "livenessProbe"} <= set(ray_container), group
            assert {"cpu", "memory"} <= set(ray_container["resources"]["limits"]), group
    # The Service reaches the front, not the Ray pods.
    selector = found[("Service", "swapwatch")]["spec"]["selector"]
    assert (
        selector.items()
        <= found[("Deployment", "swapwatch")]["spec"]["template"]["metadata"]["labels"].items()
    )
    for spec in ray_pod_templates(ray_cluster()).values():
        assert not selector.items() <= spec["template"]["metadata"]["labels"].items()


def test_only_pods_of_the_namespace_reach_the_ray_pods() -> None:
    policy = cluster_resources()[("NetworkPolicy", "swapwatch-ray-in-namespace-only")]["spec"]
    selector = policy["podSelector"]["matchLabels"].items()
    for group, spec in ray_pod_templates(ray_cluster()).items():
        assert selector <= spec["template"]["metadata"]["labels"].items(), group
    assert policy["ingress"] == [{"from": [{"podSelector": {}}]}]  # no namespaceSelector: this one


def test_publishers_reach_the_stream_pods_on_the_rtmp_ports_alone() -> None:
    resources = cluster_resources()
    policy = resources[("NetworkPolicy", "swapwatch-rtmp-push-to-stream-pods")]["spec"]
    selector = policy["podSelector"]["matchLabels"].items()
    groups = ray_pod_templates(ray_cluster())
    chosen = {
        name: group
        for name, group in groups.items()
        if selector <= group["template"]["metadata"]["labels"].items()
    }
    assert chosen and "head" not in chosen  # the head's Ray ports stay namespace-only
    assert all(declared_resources(group).get("stream_slots") for group in chosen.values())
    (rule,) = policy["ingress"]
    (ports,) = rule["ports"]
    config = resources[("ConfigMap", "swapwatch-settings")]["data"]
    low, high = (int(p) for p in config["SWAPWATCH_INGEST_RTMP_PORTS"].split(","))
    assert (ports["protocol"], ports["port"], ports["endPort"]) == ("TCP", low, high)
