"""`deploy/` builds with kubectl's kustomize, and what it builds fits the
host: the Deployment runs `flytewasm serve` with probes on the ports the
Service exposes, RBAC reaches only the plugins' kinds (cluster-wide or in
listed namespaces), only propeller reaches the gRPC port, the pod runs
unprivileged with its keys from a Secret, its memory limit holds the plugin
pool, and the host configuration in the ConfigMap is one the host accepts."""

import pathlib
import re
import shutil
import subprocess
import tempfile

import pytest
import yaml

from conftest import ROOT

DEPLOY = ROOT / "deploy"
pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


OVERLAYS = [DEPLOY / "overlays/example", DEPLOY / "overlays/namespaced"]
NAMESPACES = ["flytesnacks-development", "flytesnacks-production"]
MIB = 1 << 20


def documents(path):
    result = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return list(yaml.safe_load_all(result.stdout))


def build(path):
    objects = {}
    for doc in documents(path):
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in objects, f"{key} twice: use documents()"
        objects[key] = doc
    return objects


def build_with_components(*components):
    """base/ with these components (by name under components/), in this order."""
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        (root / "deploy").symlink_to(DEPLOY)
        (root / "kustomization.yaml").write_text(yaml.safe_dump({
            "resources": ["deploy/base"],
            "components": [f"deploy/components/{c}" for c in components],
        }))
        return build(root)


def config_map(objects):
    return next(doc for doc in _docs(objects) if doc["kind"] == "ConfigMap")


def host_config(objects):
    return yaml.safe_load(config_map(objects)["data"]["config.yaml"])


def _docs(objects):
    return objects.values() if isinstance(objects, dict) else objects


def host_container(objects):
    deployment = next(doc for doc in _docs(objects) if doc["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]


def quantity(text):
    """Bytes in a Kubernetes memory quantity (`512Mi`, `1Gi`, `1G`, `1024`)."""
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "": 1}
    number, unit = re.fullmatch(r"(\d+)([A-Za-z]*)", str(text)).groups()
    return int(number) * units[unit]


def selects(selector, labels):
    """Whether a label selector (matchLabels, matchExpressions) selects these labels."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if not {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]:
            return False
    return True


def admits(policy, container, port, labels=None, namespace=None):
    """Whether an ingress NetworkPolicy lets a source reach the named container
    port: a pod with `labels` in `namespace` (None: the policy's own), or with
    labels=None a source that is no pod at all (a node, the kubelet). An
    ipBlock counts as admitting everyone, so "not admitted" errs on the safe side."""
    number = {p["name"]: p["containerPort"] for p in container["ports"]}[port]
    own = policy["metadata"].get("namespace", "default")
    namespace = namespace or own

    def port_matches(rule):
        return not rule.get("ports") or any(p["port"] in (port, number) for p in rule["ports"])

    def peer_matches(peer):
        if "ipBlock" in peer:
            return True
        if labels is None:
            return False
        if "namespaceSelector" in peer:
            if not selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace}):
                return False
        elif namespace != own:
            return False
        return selects(peer.get("podSelector", {}), labels)

    return any(
        port_matches(rule) and ("from" not in rule or any(peer_matches(peer) for peer in rule["from"]))
        for rule in policy["spec"].get("ingress", [])
    )


def test_the_base_install_serves_the_agent_with_probes():
    objects = build(DEPLOY)
    assert {kind for kind, _ in objects} == {
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap",
        "Service", "PersistentVolumeClaim", "Deployment", "NetworkPolicy",
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


RECORDS_RULE = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create", "delete"]}
# Base PodTemplates (executor::pod_templates) are read, never written.
POD_TEMPLATES_RULE = {"apiGroups": [""], "resources": ["podtemplates"], "verbs": ["get"]}


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
    # The host's records are ConfigMaps in its own namespace only.
    records = objects[("Role", "flytewasm-records")]
    assert records["rules"] == [RECORDS_RULE]
    assert objects[("RoleBinding", "flytewasm-records")]["roleRef"]["name"] == "flytewasm-records"
    assert not any(
        "configmaps" in rule.get("resources", []) for (kind, _), o in objects.items() if kind == "ClusterRole"
        for rule in o.get("rules", [])
    )
    binding = objects[("ClusterRoleBinding", "flytewasm")]
    assert binding["subjects"][0]["name"] == "flytewasm"
    # Base PodTemplates may be in any task's namespace: read there, nothing more.
    assert objects[("ClusterRole", "flytewasm-pod-templates")]["rules"] == [POD_TEMPLATES_RULE]
    assert objects[("ClusterRoleBinding", "flytewasm-pod-templates")]["roleRef"]["name"] == "flytewasm-pod-templates"


def test_the_config_map_is_a_config_the_host_accepts(flytewasm_bin, plugins_dir, tmp_path):
    config = yaml.safe_load(config_map(build(DEPLOY))["data"]["config.yaml"])
    assert config["plugins"]["spark"]
    # The pod's mounts (cache volume, keys Secret) are here, in tmp_path.
    config["runtime"]["cache-dir"] = str(tmp_path / "cache")
    config["runtime"]["precompile-key-file"] = str(tmp_path / "keys/precompile.key")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
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


KUBEFLOW_RULE = {
    "apiGroups": ["kubeflow.org"],
    "resources": ["pytorchjobs", "tfjobs", "mpijobs"],
    "verbs": ["get", "list", "watch", "create", "delete", "patch"],
}


# The rule of each operator component (components/<name>/rbac.yaml).
OPERATOR_RULES = {
    "kubeflow": KUBEFLOW_RULE,
    "ray": {"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": KUBEFLOW_RULE["verbs"]},
    "dask": {"apiGroups": ["kubernetes.dask.org"], "resources": ["daskjobs"], "verbs": KUBEFLOW_RULE["verbs"]},
    "pods": {"apiGroups": [""], "resources": ["pods"], "verbs": KUBEFLOW_RULE["verbs"]},
}


@pytest.mark.parametrize("component", ["ray", "dask", "pods"])
def test_each_operator_component_grants_its_kind_and_combines_with_the_others(component):
    host_selector = build(DEPLOY / "base")[("ClusterRole", "flytewasm")]["aggregationRule"][
        "clusterRoleSelectors"][0]["matchLabels"]
    role = build_with_components(component)[("ClusterRole", f"flytewasm-{component}")]
    assert role["rules"] == [OPERATOR_RULES[component]]
    assert host_selector.items() <= role["metadata"]["labels"].items(), "aggregated into the host's role"
    # No config of its own: with Spark, Spark's config stays, in either order.
    spark_config = host_config(build(DEPLOY))
    for order in [("spark", "kubeflow", component), (component, "kubeflow", "spark")]:
        objects = build_with_components(*order)
        assert objects[("ClusterRole", f"flytewasm-{component}")]["rules"] == [OPERATOR_RULES[component]]
        assert ("ClusterRole", "flytewasm-kubeflow") in objects
        assert host_config(objects) == spark_config, order


def test_the_kubeflow_component_grants_the_training_operators_kinds_and_combines_with_spark():
    host_selector = build(DEPLOY / "base")[("ClusterRole", "flytewasm")]["aggregationRule"][
        "clusterRoleSelectors"][0]["matchLabels"]
    alone = build_with_components("kubeflow")
    role = alone[("ClusterRole", "flytewasm-kubeflow")]
    assert role["rules"] == [KUBEFLOW_RULE]
    assert host_selector.items() <= role["metadata"]["labels"].items(), "aggregated into the host's role"
    # It leaves the host config alone: base's on its own, Spark's with Spark, in either order.
    assert host_config(alone) == host_config(build(DEPLOY / "base"))
    spark_config = host_config(build(DEPLOY))
    for order in [("spark", "kubeflow"), ("kubeflow", "spark")]:
        objects = build_with_components(*order)
        assert objects[("ClusterRole", "flytewasm-kubeflow")]["rules"] == [KUBEFLOW_RULE]
        assert ("ClusterRole", "flytewasm-spark") in objects
        assert host_config(objects) == spark_config, order


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


BUILDS = [DEPLOY / "base", DEPLOY, *OVERLAYS]
PROPELLER = {"app.kubernetes.io/name": "flytepropeller"}


def find(docs, kind, name="flytewasm"):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.mark.parametrize("path", BUILDS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_only_propeller_reaches_the_grpc_port(path):
    docs = documents(path)
    policy = find(docs, "NetworkPolicy")
    deployment = find(docs, "Deployment")
    container = host_container(docs)
    assert policy["metadata"].get("namespace") == deployment["metadata"].get("namespace")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    # It selects the host's pods, and only them (an empty selector selects every pod).
    host_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["spec"]["podSelector"], host_labels)
    assert not selects(policy["spec"]["podSelector"], {})
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"grpc": 8000, "http": 8080}

    assert admits(policy, container, "grpc", PROPELLER)
    # kustomize's labels once rewrote a matchLabels peer to the host's own name.
    assert not admits(policy, container, "grpc", host_labels)
    assert not admits(policy, container, "grpc", {})
    assert not admits(policy, container, "grpc", {"app.kubernetes.io/name": "spark"})
    assert not admits(policy, container, "grpc", PROPELLER, namespace="flytesnacks-development")
    assert not admits(policy, container, "grpc")
    # Probes and scrapes: from the node, from pods anywhere.
    assert admits(policy, container, "http")
    assert admits(policy, container, "http", {})
    assert admits(policy, container, "http", {"app.kubernetes.io/name": "prometheus"}, namespace="monitoring")
    # deploy/README.md's patch addresses propeller's peer as ingress[0].from[0].
    assert selects(policy["spec"]["ingress"][0]["from"][0]["podSelector"], PROPELLER)


def test_propellers_label_is_in_one_place_and_a_patch_changes_it(tmp_path):
    files = [f for f in DEPLOY.rglob("*.yaml") if "flytepropeller" in f.read_text()]
    assert [f.relative_to(DEPLOY) for f in files] == [pathlib.Path("base/networkpolicy.yaml")]
    assert files[0].read_text().count("flytepropeller") == 1

    # The patch deploy/README.md shows: flyte-binary's pod, in the flyte namespace.
    flyte_binary = {"app.kubernetes.io/name": "flyte-binary"}
    (tmp_path / "deploy").symlink_to(DEPLOY)
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": ["deploy"],
        "patches": [{
            "target": {"kind": "NetworkPolicy", "name": "flytewasm"},
            "patch": yaml.safe_dump([
                {"op": "replace", "path": "/spec/ingress/0/from/0/podSelector",
                 "value": {"matchExpressions": [
                     {"key": "app.kubernetes.io/name", "operator": "In", "values": ["flyte-binary"]}]}},
                {"op": "add", "path": "/spec/ingress/0/from/0/namespaceSelector",
                 "value": {"matchLabels": {"kubernetes.io/metadata.name": "flyte"}}},
            ]),
        }],
    }))
    docs = documents(tmp_path)
    policy, container = find(docs, "NetworkPolicy"), host_container(docs)
    assert admits(policy, container, "grpc", flyte_binary, namespace="flyte")
    assert not admits(policy, container, "grpc", flyte_binary, namespace="flytesnacks-development")
    assert not admits(policy, container, "grpc", PROPELLER)
    assert admits(policy, container, "http")


@pytest.mark.parametrize("path", BUILDS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_the_pod_runs_unprivileged(path):
    docs = documents(path)
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    container = host_container(docs)
    assert len(pod["containers"]) == 1 and not pod.get("initContainers")
    pod_security, security = pod["securityContext"], container["securityContext"]
    # The container may override the pod's settings; what counts is the result.
    assert security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True
    assert security.get("runAsUser", pod_security.get("runAsUser")) not in (None, 0)
    assert security.get("runAsGroup", pod_security.get("runAsGroup", 1)) != 0
    assert security.get("seccompProfile", pod_security.get("seccompProfile")) == {"type": "RuntimeDefault"}
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert not security["capabilities"].get("add")
    assert not security.get("privileged")
    assert not any(pod.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))
    # With a read-only root, the only place to write is a scratch volume.
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = [m for m in container["volumeMounts"] if not m.get("readOnly")]
    assert writable and all("emptyDir" in volumes[m["name"]] for m in writable)


@pytest.mark.parametrize("path", BUILDS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_the_keys_come_from_a_secret_outside_the_install(path):
    docs = documents(path)
    assert not [d for d in docs if d["kind"] == "Secret"]
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    container = host_container(docs)
    keys = next(v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "flytewasm-keys")
    assert keys["secret"]["defaultMode"] == 0o400
    assert not keys["secret"].get("optional"), "without its keys the host must not start"
    assert "items" not in keys["secret"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == keys["name"])
    assert mount["mountPath"] == "/etc/flytewasm-keys" and mount["readOnly"] is True
    # The Secret's files are root's and 0400: only the pod's group can read them.
    assert pod["securityContext"].get("fsGroup") not in (None, 0)

    runtime, security = host_config(docs)["runtime"], host_config(docs)["security"]
    assert runtime["precompile-key-file"] == "/etc/flytewasm-keys/precompile.key"
    assert security["resource-meta-keys"] == "/etc/flytewasm-keys/resource-meta-keys.yaml"
    # The compile cache is the emptyDir, from the config alone, and the key is not in it.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == mounts[runtime["cache-dir"]])
    assert not runtime["precompile-key-file"].startswith(runtime["cache-dir"].rstrip("/") + "/")
    assert "FLYTEWASM_CACHE_DIR" not in {e["name"] for e in container.get("env", [])}


def test_the_key_files_stay_out_of_git():
    paths = ["deploy/precompile.key", "deploy/resource-meta-keys.yaml",
             "deploy/overlays/example/precompile.key", "deploy/base/resource-meta-keys.yaml"]
    result = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert sorted(result.stdout.split()) == sorted(paths), result.stderr
    tracked = subprocess.run(["git", "ls-files", "deploy"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert not [p for p in tracked if p.endswith(("precompile.key", "resource-meta-keys.yaml"))]


@pytest.mark.parametrize("path", BUILDS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_the_memory_limit_holds_the_plugin_pool(path):
    """docs/operations.md, "Memory sizing": every instance slot at its memory
    cap, with as much again copied out by the host, plus 384 MiB for the host
    itself, fits under the container's limit."""
    docs = documents(path)
    runtime = host_config(docs)["runtime"]
    resources = host_container(docs)["resources"]
    limit, request = quantity(resources["limits"]["memory"]), quantity(resources["requests"]["memory"])
    pool = runtime["max-concurrent-calls"] * 2 * runtime["memory-limit-bytes"]
    assert pool + 384 * MIB <= limit, f"{pool // MIB} MiB of plugins + 384 MiB > {limit // MIB} MiB"
    assert request <= limit
    assert 1 <= runtime["max-calls-per-plugin"] <= runtime["max-concurrent-calls"]


def test_every_config_has_the_same_runtime_and_keys():
    reference = host_config(build(DEPLOY))
    assert "namespaces" not in reference["security"], "the default install serves every namespace"
    for path in BUILDS:
        config = host_config(documents(path))
        assert config["k8s"] == reference["k8s"], path
        assert config["runtime"] == reference["runtime"], path
        assert {k: v for k, v in config["security"].items() if k != "namespaces"} == reference["security"], path
    # The namespaced overlay's config is deploy/'s, with tenancy added.
    namespaced = host_config(documents(DEPLOY / "overlays/namespaced"))
    assert namespaced["plugins"] == reference["plugins"]


def test_the_namespaced_overlay_grants_only_its_namespaces():
    docs = documents(DEPLOY / "overlays/namespaced")
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    host_namespace = find(docs, "ServiceAccount")["metadata"]["namespace"]
    assert host_namespace == "flyte"
    assert find(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "flytewasm"
    for doc in docs:
        if doc["kind"] not in ("Role", "RoleBinding"):
            assert doc["metadata"]["namespace"] == host_namespace, doc["kind"]

    # The host's own records Role stays in its namespace; the grants are per task namespace.
    records = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "flytewasm-records"]
    assert [r["metadata"]["namespace"] for r in records] == [host_namespace]
    assert records[0]["rules"] == [RECORDS_RULE]
    grants = [d for d in docs if d["metadata"].get("name") != "flytewasm-records"]
    roles = {d["metadata"]["namespace"]: d for d in grants if d["kind"] == "Role"}
    bindings = {d["metadata"]["namespace"]: d for d in grants if d["kind"] == "RoleBinding"}
    assert sorted(roles) == sorted(bindings) == NAMESPACES
    # The rights the plugin components grant cluster-wide, one namespace at a time.
    spark_rules = build(DEPLOY)[("ClusterRole", "flytewasm-spark")]["rules"]
    kubeflow_rules = build_with_components("spark", "kubeflow")[("ClusterRole", "flytewasm-kubeflow")]["rules"]
    assert spark_rules == [
        {
            "apiGroups": ["sparkoperator.k8s.io"],
            "resources": ["sparkapplications"],
            "verbs": ["get", "list", "watch", "create", "delete", "patch"],
        }
    ]
    assert kubeflow_rules == [KUBEFLOW_RULE]
    for namespace in NAMESPACES:
        role, binding = roles[namespace], bindings[namespace]
        operators = [OPERATOR_RULES[name] for name in ("ray", "dask", "pods")]
        assert role["rules"] == spark_rules + kubeflow_rules + operators + [POD_TEMPLATES_RULE]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "flytewasm", "namespace": host_namespace}]

    # The host refuses tasks in any other namespace.
    assert host_config(docs)["security"]["namespaces"] == NAMESPACES
