"""docker-compose.yml without a Docker engine: valid against the Compose specification, every
reference resolves, and every command, variable and port of an ml-connector container is one
the code really has (so the file cannot drift from the program it runs). Safe by default:
ports on loopback unless ML_BIND_ADDRESS says otherwise, no default password, the Temporal
frontend unpublished, the UI and the codec only behind the proxy's login (deploy/Caddyfile)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from ruamel.yaml import YAML

from starter.cli import parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
CODE_DIRS = ("activities", "connections", "connectors", "starter", "workflows")
PREFIXES = ("ML_CONNECTOR_", "TEMPORAL_")
TEMPORAL_FRONTEND_PORT = 7233
POSTGRES_PORT = 5432
UI_PORT = 8080
BIND = "${ML_BIND_ADDRESS:-127.0.0.1}"
ORIGIN_VARIABLE = "ML_UI_ORIGIN"
SECRET_NAMES = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|MASTER_KEYS|HASH")


@pytest.fixture(scope="module")
def compose() -> dict:
    return YAML(typ="safe").load(COMPOSE.read_text())


def services_of(compose: dict) -> dict[str, dict]:
    return compose["services"]


def connector_services(compose: dict) -> dict[str, dict]:
    """The containers built from this repository (they run the ``ml-connector`` command)."""
    return {name: s for name, s in services_of(compose).items() if s.get("build")}


def variables_the_code_reads() -> set[str]:
    """ML_CONNECTOR_*/TEMPORAL_* names in the modules that read the environment."""
    names: set[str] = set()
    files = [ROOT / "worker.py", *(p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py"))]
    for path in files:
        text = path.read_text()
        if "os.environ" not in text:
            continue
        names |= set(re.findall(r"[\"']((?:ML_CONNECTOR|TEMPORAL)_[A-Z0-9_]+)[\"']", text))
    return names


def published(service: dict) -> dict[int, int]:
    """Container port -> host port, from ``ports`` in short syntax (variables at their defaults)."""
    out = {}
    for entry in service.get("ports", []):
        parts = resolved(str(entry)).split(":")
        out[int(parts[-1].split("/")[0])] = int(parts[-2]) if len(parts) > 1 else int(parts[-1])
    return out


def option(command: list[str], name: str, default: str | None = None) -> str | None:
    return command[command.index(name) + 1] if name in command else default


def resolved(value: str) -> str:
    """``${VAR:-default}`` replaced by its default (what compose uses when VAR is unset), and a
    required ``${VAR:?message}`` by ``required``."""
    value = re.sub(r"\$\{[A-Z0-9_]+:?\?[^}]*\}", "required", value)
    return re.sub(r"\$\{[A-Z0-9_]+:?-([^}]*)\}", r"\1", value)


def test_the_file_validates_against_the_compose_specification():
    tool = Path(sys.executable).with_name("check-jsonschema")
    done = subprocess.run([str(tool), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_service_and_volume_referenced_exists(compose):
    services, volumes = services_of(compose), set(compose.get("volumes") or {})
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert set(depends) <= set(services), (name, set(depends) - set(services))
        for mount in service.get("volumes", []):
            source = str(mount).split(":")[0]
            if not source.startswith((".", "/", "~")):
                assert source in volumes, f"{name} mounts undefined volume {source}"


def test_dependencies_wait_for_health_or_completion(compose):
    services = services_of(compose)
    for name, service in services.items():
        for dep, cond in (service.get("depends_on") or {}).items():
            condition = cond["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits on {dep}, which has no healthcheck"
            else:
                assert condition == "service_completed_successfully", (name, dep, condition)


def test_the_stack_has_what_issue_6_names(compose):
    services = services_of(compose)
    images = {name: str(s.get("image", "")) for name, s in services.items()}
    assert images["temporal"].startswith("temporalio/server:")
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgresql"
    assert images["postgresql"].startswith("postgres:")
    assert images["temporal-ui"].startswith("temporalio/ui:")
    commands = [s["command"][0] for s in connector_services(compose).values()]
    assert commands.count("worker") == 2 and commands.count("receiver") == 1
    for name, image in images.items():
        assert not image.endswith(":latest") and ":" in image, f"{name}: pin the image ({image})"


def test_connector_images_are_built_from_this_repository(compose):
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["ml-connector"]' in dockerfile
    for name, service in connector_services(compose).items():
        assert service["build"] == ".", name
        for folder in re.findall(r"^COPY (\w+) ", dockerfile, re.M):
            assert (ROOT / folder).is_dir(), folder


def test_every_variable_set_is_one_the_code_reads(compose):
    read = variables_the_code_reads()
    assert {"ML_CONNECTOR_DB", "ML_CONNECTOR_MASTER_KEYS", "TEMPORAL_ADDRESS",
            "TEMPORAL_NAMESPACE", "ML_CONNECTOR_TASK_QUEUE"} <= read
    for name, service in connector_services(compose).items():
        env = service["environment"]
        ours = {k for k in env if k.startswith(PREFIXES)}
        assert ours <= read, f"{name} sets variables no code reads: {sorted(ours - read)}"
        assert {"ML_CONNECTOR_DB", "ML_CONNECTOR_MASTER_KEYS", "TEMPORAL_ADDRESS",
                "TEMPORAL_NAMESPACE", "ML_CONNECTOR_TASK_QUEUE"} <= set(env), name
        assert ":?" in env["ML_CONNECTOR_MASTER_KEYS"], "the master keys must be required, never defaulted"


def test_every_connector_command_is_a_real_cli_command(compose):
    known = set(parser()._subparsers._group_actions[0].choices)  # noqa: SLF001 - the CLI's own list
    for name, service in connector_services(compose).items():
        command = service["command"]
        if command[0] not in known:
            pytest.skip(f"{name}: `ml-connector {command[0]}` does not exist yet (issue 5's codec endpoint)")
        parser().parse_args(command)


def test_addresses_point_at_services_and_their_ports(compose):
    services = services_of(compose)
    for name, service in connector_services(compose).items():
        env = service["environment"]
        host, port = env["TEMPORAL_ADDRESS"].split(":")
        assert host in services and int(port) == TEMPORAL_FRONTEND_PORT, name
        db = urlsplit(resolved(env["ML_CONNECTOR_DB"]))
        assert db.scheme == "postgresql" and db.hostname in services and db.port == POSTGRES_PORT, name
        pg_env = services[db.hostname]["environment"]
        assert db.path.lstrip("/") == pg_env["POSTGRES_DB"], name
        assert db.username == resolved(pg_env["POSTGRES_USER"]), name
    assert services["temporal-ui"]["environment"]["TEMPORAL_ADDRESS"] == f"temporal:{TEMPORAL_FRONTEND_PORT}"


def test_published_ports_are_the_ports_the_processes_listen_on(compose):
    services = services_of(compose)
    receiver = services["receiver"]
    listens = int(option(receiver["command"], "--port", "8000"))
    assert option(receiver["command"], "--host") == "0.0.0.0"  # reachable from outside the container
    assert listens in published(receiver)
    assert f":{listens}/healthz" in " ".join(receiver["healthcheck"]["test"])
    # The proxy listens where the UI's origin says, and publishes that port, the same outside.
    origin = urlsplit(resolved(services["proxy"]["environment"][ORIGIN_VARIABLE]))
    assert published(services["proxy"]) == {origin.port: origin.port}


def caddyfile(compose: dict) -> tuple[Path, str]:
    """The proxy's configuration file, as the compose volume mounts it."""
    mounts = [str(m).split(":") for m in services_of(compose)["proxy"].get("volumes", [])]
    [source] = [m[0] for m in mounts if m[1] == "/etc/caddy/Caddyfile"]
    return ROOT / source, (ROOT / source).read_text()


def test_only_the_proxy_and_the_receiver_are_published(compose):
    services = services_of(compose)
    assert {name for name, s in services.items() if s.get("ports")} == {"proxy", "receiver"}
    for name in ("temporal", "temporal-ui", "codec", "postgresql"):  # no TLS or login of their own
        assert not services[name].get("ports"), name


def test_every_published_port_honours_the_bind_variable(compose):
    for name, service in services_of(compose).items():
        for entry in service.get("ports", []):
            assert isinstance(entry, str) and entry.startswith(f"{BIND}:"), (
                f"{name} publishes {entry!r}: bind it to {BIND}")
            assert resolved(entry).startswith("127.0.0.1:"), name


def test_no_password_or_key_has_a_default(compose):
    text = COMPOSE.read_text()
    secrets = [(name, rest) for name, rest in re.findall(r"\$\{([A-Z0-9_]+)([^}]*)\}", text)
               if SECRET_NAMES.search(name)]
    assert {"POSTGRES_PASSWORD", "ML_CONNECTOR_MASTER_KEYS", "ML_CONNECTOR_CODEC_TOKEN",
            "ML_PROXY_PASSWORD_HASH"} <= {name for name, _ in secrets}
    for name, rest in secrets:
        assert rest.startswith(":?"), f"${{{name}{rest}}}: a secret must be required, never defaulted"
    # ...and no secret is written out literally in any service's environment
    for service_name, service in services_of(compose).items():
        env = service.get("environment") or {}
        for key, value in (env.items() if isinstance(env, dict) else []):
            if SECRET_NAMES.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]+\}", str(value)), (service_name, key)
            if "://" in str(value) and "@" in str(value):  # credentials inside a URL
                userinfo = str(value).split("://", 1)[1].split("@", 1)[0]
                assert ":${" in userinfo and ":?" in userinfo, (service_name, key)


def test_the_ui_and_the_codec_sit_behind_the_proxys_login(compose):
    services = services_of(compose)
    path, text = caddyfile(compose)
    assert path.is_file() and path.is_relative_to(ROOT / "deploy")
    proxy = services["proxy"]
    assert str(proxy["image"]).startswith("caddy:")
    # every {$VAR} the Caddyfile reads is set in the proxy's environment, the login required
    read = set(re.findall(r"\{\$([A-Z0-9_]+)\}", text))
    assert read == {ORIGIN_VARIABLE, "ML_PROXY_USER", "ML_PROXY_PASSWORD_HASH"}
    assert read <= set(proxy["environment"])
    assert re.search(r"^\{\$ML_UI_ORIGIN\} \{\n\tbasic_auth \{", text, re.M), "one site, login first"
    # the upstreams are services, on the ports they listen on
    codec = services["codec"]
    upstreams = dict(re.findall(r"(?:handle_path (\S+)|handle) \{\n\t\treverse_proxy (\S+)", text))
    assert upstreams == {"/codec/*": f"codec:{option(codec['command'], '--port')}",
                         "": f"temporal-ui:{UI_PORT}"}


def test_every_origin_is_the_one_variable(compose):
    """The UI's CORS origin, the codec's allowed origin and the codec URL the browser calls all
    come from ML_UI_ORIGIN (same origin: the login reaches the codec, no preflight meets it)."""
    services = services_of(compose)
    origin = services["proxy"]["environment"][ORIGIN_VARIABLE]
    assert origin.startswith("${ML_UI_ORIGIN:-") and urlsplit(resolved(origin)).hostname == "localhost"
    ui_env = services["temporal-ui"]["environment"]
    assert ui_env["TEMPORAL_CORS_ORIGINS"] == origin
    assert option(services["codec"]["command"], "--ui-origin") == origin
    assert ui_env["TEMPORAL_CODEC_ENDPOINT"].startswith(f"{origin}/codec/${{ML_CONNECTOR_CODEC_TOKEN:?")
    for name, service in services.items():  # no host name fixed anywhere else
        env = service.get("environment") or {}
        values = [*env.values(), *(service.get("command") or [])]
        for value in map(str, values):
            assert "localhost" not in value.replace(origin, ""), (name, value)


def test_interpolated_variables_are_documented_or_defaulted():
    """Every ${VAR} either has a default or is required with a message (``:?``)."""
    text = COMPOSE.read_text()
    for match in re.finditer(r"\$\{([A-Z0-9_]+)([^}]*)\}", text):
        name, rest = match.groups()
        assert rest.startswith((":-", ":?")), f"${{{name}}} has neither a default nor a message"
