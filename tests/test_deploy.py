"""Structure checks of deploy/: the image, the compose stack, the Kubernetes manifests, the guide.

Nothing here builds or runs a container (there is no Docker engine on the development
machines): the files are parsed and compared with what the processes actually read
(`shared.config`), so that a renamed variable or a broken cluster layout fails here.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from services.careplan import CAREPLAN_SERVICE_CALLER
from services.cli import SERVICES
from services.consent.directory import CONSENT_SERVICE_CALLER
from services.referral import REFERRAL_SERVICE_CALLER
from services.subscriptions.domain.topics import TOPICS
from shared.access.authority import authority_subject
from shared.access.relations import relations_subject
from shared.config import ENVIRONMENT_VARIABLES, Settings
from shared.events import audit_subject_filter, events_subject_filter
from shared.organisation_register import register_changed_subject
from shared.transport.wire import bundle_subject, operation_subject, request_subject

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
NATS_NODES = ("nats-1", "nats-2", "nats-3")
# The processes `barnebro serve` runs: the gateway and the services that hold data.
DATA_SERVICES = tuple(name for name in SERVICES if name != "gateway")
# The writable places of a container whose root filesystem is read-only.
WRITABLE = ("/tmp", "/var/lib/barnebro")
# The subject prefix the guide's examples and NATS permissions are written for.
GUIDE_PREFIX = "barnebro"


# --- helpers ---------------------------------------------------------------------------------


def allowed_variable(name: str) -> bool:
    """A variable a barnebro container may be given: one Settings reads, or a standard OTEL_*."""
    return name in ENVIRONMENT_VARIABLES or name.startswith("OTEL_")


def as_map(value: object, what: str) -> dict[str, Any]:
    assert isinstance(value, dict), f"{what}: expected a mapping, got {value!r}"
    return value


def as_list(value: object, what: str) -> list[Any]:
    assert isinstance(value, list), f"{what}: expected a list, got {value!r}"
    return value


def as_args(value: object, what: str) -> list[str]:
    """A compose/Kubernetes command in list form (a string is split like a shell would)."""
    args = shlex.split(value) if isinstance(value, str) else as_list(value, what)
    assert all(isinstance(arg, str) for arg in args), f"{what}: not all strings: {args!r}"
    return [str(arg) for arg in args]


def parse_flags(args: list[str]) -> dict[str, str]:
    """`--a=1 --b 2 --c` -> {"a": "1", "b": "2", "c": ""}."""
    flags: dict[str, str] = {}
    i = 0
    while i < len(args):
        token = args[i]
        assert token.startswith("-"), f"unexpected positional argument {token!r} in {args!r}"
        name = token.lstrip("-")
        if "=" in name:
            name, value = name.split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("-"):
            value = args[i + 1]
            i += 1
        else:
            value = ""
        flags[name] = value
        i += 1
    return flags


def flag(flags: dict[str, str], *names: str) -> str | None:
    for name in names:
        if name in flags:
            return flags[name]
    return None


def environment(service: dict[str, Any], what: str) -> dict[str, str]:
    """A compose `environment`, in map or `KEY=value` list form, as a dict."""
    raw = service.get("environment", {})
    if isinstance(raw, list):
        pairs = (str(item).split("=", 1) for item in raw)
        return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}
    return {str(key): str(value) for key, value in as_map(raw, what).items()}


def settings_default(variable: str) -> object:
    """The default of the Settings field that reads `variable`."""
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if alias is not None and variable in getattr(alias, "choices", ()):
            return field.default
    raise AssertionError(f"no Settings field reads {variable}")


# --- compose ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    documents = list(yaml.safe_load_all((DEPLOY / "compose.yaml").read_text(encoding="utf-8")))
    assert len(documents) == 1
    return as_map(documents[0], "compose.yaml")


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    raw = as_map(compose["services"], "services")
    return {name: as_map(spec, f"service {name}") for name, spec in raw.items()}


@pytest.fixture(scope="module")
def barnebro(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The compose services that run the barnebro image."""
    found = {
        name: spec
        for name, spec in services.items()
        if str(spec.get("image", "")).split(":")[0] == "barnebro"
    }
    assert len(found) >= len(SERVICES), f"barnebro containers: {sorted(found)}"
    return found


def command_of(service: dict[str, Any], name: str) -> list[str]:
    assert "entrypoint" not in service, f"{name} overrides the image's ENTRYPOINT"
    return as_args(service.get("command"), f"{name}.command")


def instances(barnebro: dict[str, dict[str, Any]], process: str) -> dict[str, dict[str, Any]]:
    return {
        name: spec
        for name, spec in barnebro.items()
        if command_of(spec, name) == ["serve", process]
    }


def nats_flags(services: dict[str, dict[str, Any]], node: str) -> dict[str, str]:
    return parse_flags(as_args(services[node]["command"], f"{node}.command"))


def test_every_barnebro_container_serves_a_known_process(
    barnebro: dict[str, dict[str, Any]],
) -> None:
    for name, spec in barnebro.items():
        command = command_of(spec, name)
        assert len(command) == 2 and command[0] == "serve", f"{name}: {command}"
        assert command[1] in SERVICES, f"{name}: `barnebro serve` knows only {SERVICES}"
        assert name.startswith(f"{command[1]}-"), f"{name} runs {command[1]}"


def test_every_barnebro_container_is_read_only_with_writable_tmpfs(
    barnebro: dict[str, dict[str, Any]],
) -> None:
    for name, spec in barnebro.items():
        assert spec.get("read_only") is True, name
        mounts = {str(entry).split(":")[0] for entry in as_list(spec.get("tmpfs"), name)}
        assert set(WRITABLE) <= mounts, f"{name}: tmpfs {sorted(mounts)}"


def test_three_nats_nodes_with_jetstream_and_their_own_store(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    nats = sorted(
        name for name, spec in services.items() if str(spec.get("image", "")) == "nats:2.10"
    )
    assert nats == list(NATS_NODES)
    declared_volumes = set(as_map(compose.get("volumes"), "volumes"))
    stores: set[str] = set()
    for node in NATS_NODES:
        flags = nats_flags(services, node)
        assert flag(flags, "name", "n", "server_name") == node
        assert flag(flags, "jetstream", "js") is not None, f"{node}: JetStream not enabled"
        store_dir = flag(flags, "store_dir", "sd")
        assert store_dir, f"{node}: no JetStream store directory"
        mounts = [str(volume) for volume in as_list(services[node].get("volumes"), node)]
        sources = [m.split(":")[0] for m in mounts if m.split(":")[1] == store_dir]
        assert len(sources) == 1, f"{node}: {store_dir} is not a volume: {mounts}"
        assert sources[0] in declared_volumes, f"{node}: volume {sources[0]} is not declared"
        stores.add(sources[0])
    assert len(stores) == len(NATS_NODES), f"NATS nodes share a store volume: {stores}"


def test_nats_cluster_routes_name_each_other(services: dict[str, dict[str, Any]]) -> None:
    cluster_names: set[str | None] = set()
    for node in NATS_NODES:
        flags = nats_flags(services, node)
        cluster_names.add(flag(flags, "cluster_name"))
        cluster = flag(flags, "cluster", "cluster_listen")
        assert cluster, f"{node}: no cluster listen URL"
        cluster_port = urlsplit(cluster).port
        routes = [urlsplit(route.strip()) for route in (flag(flags, "routes") or "").split(",")]
        hosts = {route.hostname for route in routes if route.hostname}
        assert hosts - {node} == set(NATS_NODES) - {node}, f"{node} routes to {hosts}"
        assert {route.port for route in routes} == {cluster_port}, f"{node}: route ports"
    assert len(cluster_names) == 1 and None not in cluster_names, cluster_names


def test_only_one_nats_node_publishes_the_client_port(
    services: dict[str, dict[str, Any]],
) -> None:
    published = {node: services[node].get("ports") for node in NATS_NODES}
    exposed = {node: ports for node, ports in published.items() if ports}
    assert list(exposed) == ["nats-1"], published
    ports = [str(port) for port in as_list(exposed["nats-1"], "nats-1.ports")]
    assert [port.rsplit(":", 1)[-1] for port in ports] == ["4222"], ports


def test_nats_url_reaches_every_node(
    services: dict[str, dict[str, Any]], barnebro: dict[str, dict[str, Any]]
) -> None:
    aliases: list[set[str]] = []
    for node in NATS_NODES:
        networks = as_map(services[node].get("networks"), f"{node}.networks")
        default = as_map(networks.get("default"), f"{node}.networks.default")
        aliases.append({str(alias) for alias in as_list(default.get("aliases"), node)})
    common = set.intersection(*aliases)
    for name, spec in barnebro.items():
        host = urlsplit(environment(spec, name)["NATS_URL"]).hostname
        assert host in common, f"{name}: NATS_URL host {host} is not an alias of all nodes"


def test_postgres_16_with_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    postgres = services["postgres"]
    assert str(postgres["image"]).startswith("postgres:16")
    check = as_args(as_map(postgres["healthcheck"], "healthcheck")["test"], "healthcheck.test")
    assert any("pg_isready" in part for part in check), check


def test_gateways(barnebro: dict[str, dict[str, Any]]) -> None:
    gateways = instances(barnebro, "gateway")
    assert len(gateways) == 2, sorted(gateways)
    host_ports: list[str] = []
    for name, spec in gateways.items():
        env = environment(spec, name)
        assert env["BARNEBRO_HTTP_HOST"] == "0.0.0.0"
        assert "DATABASE_URL" not in env, f"{name}: the gateway holds no data"
        ports = [str(port).split(":") for port in as_list(spec.get("ports"), f"{name}.ports")]
        assert [port[-1] for port in ports] == [env["BARNEBRO_HTTP_PORT"]], ports
        host_ports += [port[-2] for port in ports]
        test = as_args(as_map(spec["healthcheck"], name)["test"], f"{name}.healthcheck")
        assert any("/readyz" in part for part in test), test  # ready: every service serves
        jwks = env["BARNEBRO_JWKS_FILE"]
        targets = [as_map(v, name).get("target") for v in as_list(spec.get("volumes"), name)]
        assert jwks in targets, f"{name}: nothing mounted at BARNEBRO_JWKS_FILE={jwks}"
    assert "8080" in host_ports and len(set(host_ports)) == len(host_ports), host_ports


@pytest.mark.parametrize("process", DATA_SERVICES)
def test_two_instances_of_each_service(
    compose: dict[str, Any], barnebro: dict[str, dict[str, Any]], process: str
) -> None:
    found = instances(barnebro, process)
    assert sorted(found) == [f"{process}-1", f"{process}-2"], sorted(found)
    service_env = {
        str(k): str(v) for k, v in as_map(compose["x-service-env"], "x-service-env").items()
    }
    for name, spec in found.items():
        assert "ports" not in spec, f"{name}: services have no port"
        assert environment(spec, name) == service_env, f"{name}: not the service environment"
        url = urlsplit(environment(spec, name)["DATABASE_URL"])
        assert url.scheme == "postgresql" and url.hostname == "postgres", url
        depends = as_map(spec.get("depends_on"), f"{name}.depends_on")
        assert as_map(depends["postgres"], name)["condition"] == "service_healthy"
        assert set(NATS_NODES) <= set(depends), f"{name}: depends on {sorted(depends)}"


def test_database_url_matches_the_postgres_service(
    services: dict[str, dict[str, Any]], barnebro: dict[str, dict[str, Any]]
) -> None:
    pg = environment(services["postgres"], "postgres")
    data_instances = {
        name: spec
        for process in DATA_SERVICES
        for name, spec in instances(barnebro, process).items()
    }
    assert data_instances
    for name, spec in data_instances.items():
        url = urlsplit(environment(spec, name)["DATABASE_URL"])
        assert url.username == pg["POSTGRES_USER"], name
        assert url.password == pg["POSTGRES_PASSWORD"], name
        assert url.path.lstrip("/") == pg["POSTGRES_DB"], name


def test_shared_environment_anchor_is_used_everywhere(
    compose: dict[str, Any], barnebro: dict[str, dict[str, Any]]
) -> None:
    shared = {
        str(k): str(v) for k, v in as_map(compose["x-barnebro-env"], "x-barnebro-env").items()
    }
    assert {"NATS_URL", "BARNEBRO_EVENT_REPLICAS", "BARNEBRO_NATS_PREFIX"} <= set(shared)
    assert int(shared["BARNEBRO_EVENT_REPLICAS"]) == len(NATS_NODES)
    for name, spec in barnebro.items():
        env = environment(spec, name)
        missing = {k: v for k, v in shared.items() if env.get(k) != v}
        assert not missing, f"{name} lacks shared settings {missing}"


def test_compose_sets_only_known_variables(
    compose: dict[str, Any], barnebro: dict[str, dict[str, Any]]
) -> None:
    used: set[str] = set()
    for name, spec in barnebro.items():
        used |= set(environment(spec, name))
    for key, value in compose.items():
        if key.startswith("x-") and key.endswith("-env"):
            used |= set(as_map(value, key))
    unknown = sorted(name for name in used if not allowed_variable(name))
    assert not unknown, f"not read by shared.config.Settings: {unknown}"
    assert {"NATS_URL", "DATABASE_URL", "BARNEBRO_HTTP_PORT", "BARNEBRO_JWKS_FILE"} <= used


def test_compose_builds_the_deploy_dockerfile(barnebro: dict[str, dict[str, Any]]) -> None:
    for name, spec in barnebro.items():
        build = as_map(spec.get("build"), f"{name}.build")
        context = (DEPLOY / str(build["context"])).resolve()
        assert context == ROOT, f"{name}: build context {context}"
        assert (context / str(build["dockerfile"])).resolve() == DEPLOY / "Dockerfile"


# --- Kubernetes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    files = sorted(KUBERNETES.glob("*.yaml")) + sorted(KUBERNETES.glob("*.yml"))
    assert len(files) >= 3, files
    documents: list[dict[str, Any]] = []
    for path in files:
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document is not None:
                doc = as_map(document, path.name)
                doc["__file__"] = path.name
                documents.append(doc)
    return documents


def of_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {
        str(as_map(doc["metadata"], "metadata")["name"]): doc
        for doc in manifests
        if doc.get("kind") == kind and doc.get("apiVersion") != "kustomize.config.k8s.io/v1beta1"
    }


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    template = as_map(as_map(deployment["spec"], "spec")["template"], "template")
    return as_map(template["spec"], "template.spec")


def pod_labels(deployment: dict[str, Any]) -> dict[str, Any]:
    template = as_map(as_map(deployment["spec"], "spec")["template"], "template")
    return as_map(as_map(template["metadata"], "template.metadata")["labels"], "labels")


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return [as_map(c, "container") for c in as_list(pod_spec(deployment)["containers"], "c")]


def deployment_serving(manifests: list[dict[str, Any]], process: str) -> dict[str, Any]:
    found = [
        deployment
        for deployment in of_kind(manifests, "Deployment").values()
        if any(c.get("args") == ["serve", process] for c in containers(deployment))
    ]
    assert len(found) == 1, f"{len(found)} Deployments serve {process}"
    return found[0]


def test_kustomization_lists_every_manifest(manifests: list[dict[str, Any]]) -> None:
    kustomizations = [doc for doc in manifests if doc.get("kind") == "Kustomization"]
    assert len(kustomizations) == 1
    resources = {str(r) for r in as_list(kustomizations[0]["resources"], "resources")}
    files = {str(doc["__file__"]) for doc in manifests if doc.get("kind") != "Kustomization"}
    assert resources == files


def test_nats_comes_from_the_helm_chart(manifests: list[dict[str, Any]]) -> None:
    assert not of_kind(manifests, "StatefulSet")
    images = [
        str(c.get("image", ""))
        for deployment in of_kind(manifests, "Deployment").values()
        for c in containers(deployment)
    ]
    assert images and not any(image.startswith("nats") for image in images), images


def selector_of(deployment: dict[str, Any]) -> dict[str, Any]:
    spec = as_map(deployment["spec"], "spec")
    return as_map(as_map(spec["selector"], "selector")["matchLabels"], "matchLabels")


def test_a_deployment_per_process_with_two_replicas(manifests: list[dict[str, Any]]) -> None:
    deployments = of_kind(manifests, "Deployment")
    assert sorted(deployments) == sorted(f"barnebro-{p}" for p in SERVICES), sorted(deployments)
    for process in SERVICES:
        deployment = deployment_serving(manifests, process)
        assert deployment["metadata"]["name"] == f"barnebro-{process}"
        spec = as_map(deployment["spec"], "spec")
        assert spec["replicas"] == 2, process
        assert selector_of(deployment).items() <= pod_labels(deployment).items(), process
        for container in containers(deployment):
            assert "command" not in container, f"{process} overrides ENTRYPOINT"
            assert str(container["image"]).split(":")[0] == "barnebro"
            security = as_map(container.get("securityContext"), f"{process} securityContext")
            assert security["readOnlyRootFilesystem"] is True, process
            mounts = {str(m["mountPath"]) for m in as_list(container["volumeMounts"], process)}
            assert set(WRITABLE) <= mounts, f"{process}: mounts {sorted(mounts)}"
        assert pod_spec(deployment)["securityContext"]["runAsNonRoot"] is True


def test_deployment_selectors_do_not_overlap(manifests: list[dict[str, Any]]) -> None:
    deployments = of_kind(manifests, "Deployment")
    for name, deployment in deployments.items():
        for other, other_deployment in deployments.items():
            if other != name:
                overlap = selector_of(deployment).items() <= pod_labels(other_deployment).items()
                assert not overlap, f"{name} selects the pods of {other}"


def test_gateway_service_selects_gateway_pods(manifests: list[dict[str, Any]]) -> None:
    gateway = deployment_serving(manifests, "gateway")
    services = of_kind(manifests, "Service")
    assert list(services) == ["barnebro-gateway"], sorted(services)
    spec = as_map(services["barnebro-gateway"]["spec"], "service spec")
    selector = as_map(spec["selector"], "selector")
    assert selector.items() <= pod_labels(gateway).items()
    for process in DATA_SERVICES:
        other = deployment_serving(manifests, process)
        assert not selector.items() <= pod_labels(other).items(), f"selects {process} pods"
    (container,) = containers(gateway)
    names = {str(p.get("name")) for p in as_list(container["ports"], "ports")}
    numbers = {p.get("containerPort") for p in as_list(container["ports"], "ports")}
    for port in as_list(spec["ports"], "service ports"):
        target = as_map(port, "port")["targetPort"]
        assert target in names or target in numbers, target
    probe = as_map(container["readinessProbe"], "readinessProbe")
    assert as_map(probe["httpGet"], "httpGet")["path"] == "/healthz"


def test_configmaps_hold_only_known_variables(manifests: list[dict[str, Any]]) -> None:
    configmaps = of_kind(manifests, "ConfigMap")
    assert "barnebro-env" in configmaps
    keys = {
        str(key)
        for configmap in configmaps.values()
        for key in as_map(configmap.get("data"), "data")
    }
    assert not sorted(k for k in keys if not allowed_variable(k))
    assert "DATABASE_URL" not in keys, "DATABASE_URL belongs in a Secret"
    shared = as_map(configmaps["barnebro-env"]["data"], "barnebro-env")
    assert shared["BARNEBRO_EVENT_REPLICAS"] == "3"
    assert urlsplit(str(shared["NATS_URL"])).hostname == "nats"


def test_deployments_reference_configmaps_and_the_database_secret(
    manifests: list[dict[str, Any]],
) -> None:
    configmaps = set(of_kind(manifests, "ConfigMap"))
    env_names: dict[str, dict[str, Any]] = {}
    for deployment in of_kind(manifests, "Deployment").values():
        for container in containers(deployment):
            refs = {
                str(as_map(source["configMapRef"], "configMapRef")["name"])
                for source in as_list(container.get("envFrom"), "envFrom")
            }
            assert "barnebro-env" in refs and refs <= configmaps, refs
            for variable in container.get("env", []):
                env_names[str(variable["name"])] = as_map(variable, "env")
    assert not sorted(name for name in env_names if not allowed_variable(name))
    (gateway,) = containers(deployment_serving(manifests, "gateway"))
    assert "DATABASE_URL" not in {str(v["name"]) for v in gateway.get("env", [])}


@pytest.mark.parametrize("process", DATA_SERVICES)
def test_service_deployments_read_the_database_secret_and_have_no_port(
    manifests: list[dict[str, Any]], process: str
) -> None:
    (container,) = containers(deployment_serving(manifests, process))
    assert "ports" not in container, f"{process}: services have no port"
    refs = {
        str(as_map(source["configMapRef"], "configMapRef")["name"])
        for source in as_list(container.get("envFrom"), "envFrom")
    }
    assert refs == {"barnebro-env"}, f"{process}: {sorted(refs)}"
    database = {str(v["name"]): v for v in as_list(container["env"], "env")}["DATABASE_URL"]
    secret = as_map(as_map(database["valueFrom"], "valueFrom")["secretKeyRef"], "secretKeyRef")
    assert secret["name"] == "barnebro-database" and secret["key"] == "DATABASE_URL"


# --- Dockerfile ------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = [[]]
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def test_dockerfile_builds_on_python_311() -> None:
    preamble, *stages = dockerfile_stages()
    arguments = dict(arg.split("=", 1) for kind, arg in preamble if kind == "ARG" and "=" in arg)
    assert len(stages) >= 2, "expected a build stage and a runtime stage"
    for stage in stages:
        base = stage[0][1].split()[0]
        base = re.sub(r"\$\{(\w+)\}", lambda m: arguments[m.group(1)], base)
        assert base.startswith("python:3.11"), base


def test_dockerfile_installs_the_project_and_runs_barnebro() -> None:
    *build_stages, runtime = dockerfile_stages()[1:]
    build_runs = [args for stage in build_stages for kind, args in stage if kind == "RUN"]
    assert any(re.search(r"pip wheel\b.*\s\.$", run) for run in build_runs), build_runs
    runs = [args for kind, args in runtime if kind == "RUN"]
    assert any(re.search(r"pip install\b.*\bbarnebro\b", run) for run in runs), runs
    final = {kind: args for kind, args in runtime}
    assert json.loads(final["ENTRYPOINT"]) == ["barnebro"]
    assert json.loads(final["CMD"]) == ["serve", "gateway"]
    user = final["USER"].split(":")[0]
    assert user not in {"root", "0"}, user
    assert "8080" in final["EXPOSE"].split()


def test_dockerfile_environment_is_known() -> None:
    runtime = dockerfile_stages()[-1]
    env: dict[str, str] = {}
    for kind, args in runtime:
        if kind == "ENV":
            for token in shlex.split(args):
                key, _, value = token.partition("=")
                env[key] = value
    assert env["BARNEBRO_HTTP_HOST"] == "0.0.0.0"
    # PYTHON* variables are read by the interpreter, not by barnebro.
    unknown = [k for k in env if not allowed_variable(k) and not k.startswith("PYTHON")]
    assert not unknown, unknown


def test_dockerignore_lets_the_package_through() -> None:
    lines = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "expected an allow-list"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    needed = {"!pyproject.toml"} | {f"!{str(p).rstrip('*')}/" for p in include}
    readme = pyproject["project"].get("readme")
    if isinstance(readme, str):
        needed.add(f"!{readme}")
    assert needed <= set(lines), sorted(needed - set(lines))


# --- the guide -------------------------------------------------------------------------------


def readme() -> str:
    return (DEPLOY / "README.md").read_text(encoding="utf-8")


def test_guide_documents_every_variable_with_its_default() -> None:
    section = readme().split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|\s*([^|]*?)\s*\|", section, re.MULTILINE)
    documented = dict(rows)
    assert len(rows) == len(documented), "a variable is listed twice"
    assert sorted(documented) == sorted(ENVIRONMENT_VARIABLES)
    for variable, shown in documented.items():
        default = settings_default(variable)
        if default == "":
            expected = "(empty)"
        elif isinstance(default, bool):
            expected = f"`{str(default).lower()}`"
        else:
            expected = f"`{default}`"
        assert shown == expected, f"{variable}: README says {shown}, Settings has {default!r}"


def section(title: str) -> str:
    """The text of one `## title` section of the guide (up to the next `## `)."""
    return readme().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_guide_lists_every_process() -> None:
    text = section("Processes")
    rows = re.findall(r"^\|\s*(\w+)\s*\|\s*`([^`]*)`\s*\|", text, re.MULTILINE)
    assert sorted(name for name, _ in rows) == sorted(SERVICES), rows
    for name, command in rows:
        assert command == f"serve {name}", f"{name}: {command}"
    for sentence in re.split(r"(?<=\.)\s", text):
        if "follow" in sentence or "not listed" in sentence:
            running = [name for name in SERVICES if f"`{name}`" in sentence]
            assert not running, f"{running} run today, yet: {sentence!r}"


def durable_consumers() -> list[str]:
    """The names of the durable JetStream consumers the code creates."""
    names = []
    for path in sorted([*(ROOT / "services").rglob("*.py"), *(ROOT / "shared").rglob("*.py")]):
        names += re.findall(r'\bdurable="([^"]+)"', path.read_text(encoding="utf-8"))
    return names


def test_guide_names_the_nats_subjects_streams_buckets_and_consumers() -> None:
    text = section("NATS and JetStream")
    settings = Settings(nats_prefix=GUIDE_PREFIX)
    prefix = "<prefix>"
    for name in (
        settings.stream_name,
        settings.audit_stream_name,
        settings.registry_bucket,
        settings.consent_view_bucket,
        f"KV_{settings.consent_view_bucket}",
        request_subject(prefix, "<ResourceType>"),
        bundle_subject(prefix, "<service>"),
        operation_subject(prefix, "<service>"),
        operation_subject(GUIDE_PREFIX, "consent"),
        events_subject_filter(prefix),
        audit_subject_filter(prefix),
        f"{prefix}.events.directory.>",
        "<PREFIX>_EVENTS",
        "<PREFIX>_AUDIT",
        "<prefix>_registry",
        "<prefix>_consent_view",
        "$KV.<prefix>_consent_view.<patient>",
    ):
        assert f"`{name}`" in text, name
    consumers = durable_consumers()
    assert "consent-audit-trail" in consumers, consumers
    for consumer in consumers:
        assert f"`{consumer}`" in text, f"durable consumer {consumer} is not documented"
    assert "Helm chart" in text
    for process in SERVICES:
        assert f"`serve {process}`" in readme(), process


# --- the NATS permissions in the guide -------------------------------------------------------


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, a final `>` one or more."""
    tokens, parts = pattern.split("."), subject.split(".")
    for i, token in enumerate(tokens):
        if token == ">":
            return len(parts) > i
        if i >= len(parts) or token not in ("*", parts[i]):
            return False
    return len(tokens) == len(parts)


@dataclass(frozen=True)
class Rule:
    allow: tuple[str, ...]
    deny: tuple[str, ...]

    def permits(self, subject: str) -> bool:
        allowed = not self.allow or any(subject_matches(p, subject) for p in self.allow)
        return allowed and not any(subject_matches(p, subject) for p in self.deny)


@dataclass(frozen=True)
class NatsUser:
    publish: Rule
    subscribe: Rule
    allow_responses: bool


def nats_rule(text: str) -> Rule:
    def listed(key: str) -> tuple[str, ...]:
        found = re.search(rf"\b{key}:\s*\[(.*?)\]", text, re.DOTALL)
        return tuple(re.findall(r'"([^"]+)"', found.group(1))) if found else ()

    return Rule(listed("allow"), listed("deny"))


@pytest.fixture(scope="module")
def nats_users() -> dict[str, NatsUser]:
    """The users of the `authorization` block in the guide (for GUIDE_PREFIX)."""
    block = re.search(r"```\n(authorization \{.*?\n\})\n```", readme(), re.DOTALL)
    assert block, "no authorization block in deploy/README.md"
    users: dict[str, NatsUser] = {}
    for chunk in re.split(r"\{\s*user:\s*", block.group(1))[1:]:
        name = chunk.split(",", 1)[0].strip()
        publish, _, rest = chunk.partition("subscribe:")
        assert "publish:" in publish and rest, f"{name}: publish and subscribe expected"
        users[name] = NatsUser(
            nats_rule(publish.split("publish:", 1)[1]),
            nats_rule(rest),
            re.search(r"allow_responses:\s*true", chunk) is not None,
        )
    return users


def user_of(nats_users: dict[str, NatsUser], process: str) -> NatsUser:
    """A process runs as `barnebro-<process>` if the guide has that user, else as the shared
    `barnebro-service` (the gateway must have its own)."""
    own = nats_users.get(f"barnebro-{process}")
    if own is None:
        assert process != "gateway", "the gateway needs a user of its own"
        own = nats_users["barnebro-service"]
    return own


def directory_reads() -> dict[str, set[str]]:
    """The resource types each service requests from the directory (its scopes)."""
    return {
        process: {scope.split("/")[1].split(".")[0] for scope in caller.scopes}
        for process, caller in (
            ("consent", CONSENT_SERVICE_CALLER),
            ("referral", REFERRAL_SERVICE_CALLER),
            ("careplan", CAREPLAN_SERVICE_CALLER),
        )
    }


def subscription_reads() -> set[str]:
    """The resource types the subscriptions service reads (as the subscriber) for full-resource
    notifications: those of the events that trigger its topics (`<service>.<Type>.<event>`)."""
    return {trigger.split(".")[1] for topic in TOPICS for trigger in topic.triggers}


def test_only_the_gateway_writes_the_dpop_replay_bucket(nats_users: dict[str, NatsUser]) -> None:
    subject = f"$KV.{Settings(nats_prefix=GUIDE_PREFIX).dpop_replay_bucket}.a-used-proof"
    writers = sorted(name for name, user in nats_users.items() if user.publish.permits(subject))
    assert writers == ["barnebro-gateway"], writers


def test_only_the_gateway_sends_requests(nats_users: dict[str, NatsUser]) -> None:
    prefix = GUIDE_PREFIX
    gateway = user_of(nats_users, "gateway")
    reads = {**directory_reads(), "subscriptions": subscription_reads()}
    assert all(reads.values()), "the consent and referral services read the directory"
    read_types = {t for types in reads.values() for t in types}
    requests = {
        *(
            request_subject(prefix, t)
            for t in (*read_types, "Consent", "AuditEvent", "Practitioner", "Task", "CareTeam")
        ),
        *(bundle_subject(prefix, s) for s in DATA_SERVICES),
        *(operation_subject(prefix, s) for s in DATA_SERVICES),
    }
    for subject in requests:
        assert gateway.publish.permits(subject), f"gateway may not publish {subject}"
        assert not gateway.subscribe.permits(subject), f"gateway may take {subject}"
    assert gateway.subscribe.permits("_INBOX.abc.def"), "gateway gets no replies"
    for process in DATA_SERVICES:
        user = user_of(nats_users, process)
        allowed = {request_subject(prefix, t) for t in reads.get(process, set())}
        for subject in requests:
            expected = subject in allowed
            assert user.publish.permits(subject) == expected, f"{process} publishing {subject}"


def test_services_answer_publish_events_audit_and_register(
    nats_users: dict[str, NatsUser],
) -> None:
    settings = Settings(nats_prefix=GUIDE_PREFIX)
    prefix = settings.nats_prefix
    for process in DATA_SERVICES:
        user = user_of(nats_users, process)
        assert user.allow_responses, f"{process} cannot answer requests"
        for subject in (
            request_subject(prefix, "Patient"),
            bundle_subject(prefix, process),
            operation_subject(prefix, process),
            "_INBOX.abc.def",
        ):
            assert user.subscribe.permits(subject), f"{process} may not subscribe {subject}"
        for subject in (
            f"{prefix}.events.{process}.Patient.created._",
            f"{prefix}.audit.{process}.access",
            f"$KV.{settings.registry_bucket}.{process}",
            f"$JS.API.STREAM.INFO.{settings.stream_name}",
            f"$JS.API.STREAM.INFO.{settings.audit_stream_name}",
        ):
            assert user.publish.permits(subject), f"{process} may not publish {subject}"


def test_only_consent_writes_the_consent_view(nats_users: dict[str, NatsUser]) -> None:
    settings = Settings(nats_prefix=GUIDE_PREFIX)
    subject = f"$KV.{settings.consent_view_bucket}.a-patient"
    for process in SERVICES:
        user = user_of(nats_users, process)
        assert user.publish.permits(subject) == (process == "consent"), process
    consent = user_of(nats_users, "consent")
    assert consent is not nats_users.get("barnebro-service"), "consent needs its own user"
    acks = f"$JS.ACK.{settings.audit_stream_name}.consent-audit-trail.1.1.1.1.0"
    assert consent.publish.permits(acks), "the audit trail cannot acknowledge"


def test_only_services_announce_relations_and_the_directory_takes_them(
    nats_users: dict[str, NatsUser],
) -> None:
    """Publishing on `<prefix>.relations` gives an organisation a relation to a child: the
    services that write records may, the gateway (which carries clients' requests) may not."""
    subject = relations_subject(GUIDE_PREFIX)
    gateway = user_of(nats_users, "gateway")
    assert not gateway.publish.permits(subject), "the gateway may not announce relations"
    assert not gateway.subscribe.permits(subject)
    for process in DATA_SERVICES:
        assert user_of(nats_users, process).publish.permits(subject), process
    assert user_of(nats_users, "directory").subscribe.permits(subject)
    organisation_event = f"{GUIDE_PREFIX}.events.directory.Organization.updated._"
    changed = register_changed_subject(GUIDE_PREFIX)
    for process in ("gateway", *DATA_SERVICES):
        user = user_of(nats_users, process)
        for subject in (organisation_event, changed):
            assert user.subscribe.permits(subject), f"{process}'s kept register goes stale"
        assert user.publish.permits(changed) == (process == "directory"), process


def test_only_the_directory_asks_the_consent_service_to_judge_changed_authority(
    nats_users: dict[str, NatsUser],
) -> None:
    """The directory waits on `<prefix>.consent.authority-changed` for the consent service
    before it answers the register: both must be allowed, and nobody else needs it."""
    subject = authority_subject(GUIDE_PREFIX)
    for process in ("gateway", *DATA_SERVICES):
        user = user_of(nats_users, process)
        assert user.publish.permits(subject) == (process == "directory"), process
        assert user.subscribe.permits(subject) == (process == "consent"), process
