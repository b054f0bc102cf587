"""`deploy/` builds with kubectl's kustomize, and what it builds fits the
host: the Deployment runs `flytewasm serve` with probes on the ports the
Service exposes, RBAC reaches only the plugins' kinds, and the host
configuration in the ConfigMap is one the host accepts."""

import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT

DEPLOY = ROOT / "deploy"
pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


def build(path):
    result = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(result.stdout)}


def config_map(objects):
    return next(doc for (kind, _), doc in objects.items() if kind == "ConfigMap")


def test_the_base_install_serves_the_agent_with_probes():
    objects = build(DEPLOY)
    assert {kind for kind, _ in objects} == {
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
        "Service", "PersistentVolumeClaim", "Deployment",
    }
    deployment = objects[("Deployment", "flytewasm")]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "flytewasm"
    container = pod["containers"][0]
    assert container["args"][0] == "serve"
    assert "--plugins=/plugins" in container["args"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 8000, "http": 8080}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["plugins"] == "/plugins"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["plugins"]["persistentVolumeClaim"]["claimName"] == "flytewasm-plugins"
    assert volumes["config"]["configMap"]["name"] == config_map(objects)["metadata"]["name"]

    service = objects[("Service", "flytewasm")]
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {"grpc": "grpc", "http": "http"}
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_rbac_reaches_only_the_plugins_kinds():
    objects = build(DEPLOY)
    host_role = objects[("ClusterRole", "flytewasm")]
    assert host_role["rules"] == []
    selector = host_role["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]
    spark_role = objects[("ClusterRole", "flytewasm-spark")]
    assert selector.items() <= spark_role["metadata"]["labels"].items()
    assert spark_role["rules"] == [
        {
            "apiGroups": ["sparkoperator.k8s.io"],
            "resources": ["sparkapplications"],
            "verbs": ["get", "list", "watch", "create", "delete", "patch"],
        }
    ]
    binding = objects[("ClusterRoleBinding", "flytewasm")]
    assert binding["subjects"][0]["name"] == "flytewasm"


def test_the_config_map_is_a_config_the_host_accepts(flytewasm_bin, plugins_dir, tmp_path):
    config = config_map(build(DEPLOY))["data"]["config.yaml"]
    assert yaml.safe_load(config)["plugins"]["spark"]
    (tmp_path / "config.yaml").write_text(config)
    result = subprocess.run(
        [str(flytewasm_bin), "render", "--plugins", str(plugins_dir), "--config", str(tmp_path / "config.yaml"),
         str(ROOT / "examples/spark_pi.pb")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    app = yaml.safe_load(result.stdout)
    # The Spark section reached the plugin; the k8s section the host.
    assert app["spec"]["sparkConf"]["spark.kubernetes.allocation.batch.size"] == "50"
    assert "flyte.org/finalizer-k8s" in app["metadata"]["finalizers"]


def test_the_example_overlay_moves_to_flyte_and_ships_plugins_as_an_image():
    objects = build(DEPLOY / "overlays/example")
    assert ("PersistentVolumeClaim", "flytewasm-plugins") not in objects
    for (kind, _), doc in objects.items():
        if kind not in ("ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == "flyte", kind
    pod = objects[("Deployment", "flytewasm")]["spec"]["template"]["spec"]
    plugins = next(v for v in pod["volumes"] if v["name"] == "plugins")
    assert plugins["image"]["reference"].startswith("ghcr.io/")
    assert objects[("ClusterRoleBinding", "flytewasm")]["subjects"][0]["namespace"] == "flyte"
