"""The farm files in deploy/ keep their promises: the images, the compose farm, the Kubernetes GPU pool.

Fast and offline: no Docker daemon, no cluster. `docker compose config` / `docker-compose config`
runs when one of them is on PATH; the Kubernetes models (`kubernetes`) and Prefect's Kubernetes
worker (`prefect-kubernetes`) check the pool's job when they are installed; otherwise those tests
are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
import subprocess
import tomllib
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from studio_nova.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
POOL_TEMPLATE = DEPLOY / "k8s" / "gpu-work-pool.json"
DOCKERFILES = {"gpu": DEPLOY / "Dockerfile", "cpu": DEPLOY / "Dockerfile.cpu"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

OUT, MEDIA, MODELS = "/studio/out", "/studio/media", "/studio/models"
GPU_POOL_NAME = "studio-nova-gpu"


def _torch_pin() -> str:
    """The torch version pyproject's `model` extra pins."""
    (pin,) = [req for req in PYPROJECT["project"]["optional-dependencies"]["model"] if req.startswith("torch")]
    match = re.fullmatch(r"torch==([\w.]+)", pin)
    assert match, f"pyproject's model extra should pin torch exactly, got {pin!r}"
    return match.group(1)


# -- compose ---------------------------------------------------------------------------------------


def _interpolate(text: str) -> str:
    """Compose's `${VAR:-default}` with every variable unset (so the file's own defaults)."""
    return re.sub(r"\$\{[A-Z_][A-Z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", text)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(_interpolate(COMPOSE.read_text()))


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _command(service: dict) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else list(command)


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _studio_services(services: dict) -> dict:
    """The services that run the studio-nova images (the server, `register` and the workers)."""
    return {name: svc for name, svc in services.items() if str(svc.get("image", "")).startswith("studio-nova:")}


def _workers(services: dict) -> dict:
    return {name: svc for name, svc in services.items() if _command(svc)[:1] == ["worker"]}


def _pool(service: dict) -> str:
    command = _command(service)
    return command[command.index("--pool") + 1]


def _gpu_workers(services: dict) -> dict:
    return {name: svc for name, svc in _workers(services).items() if _pool(svc) == "gpu"}


def _devices(service: dict) -> list[dict]:
    return service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def _mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """Container path -> (source, read-only) of the service's volumes."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = (str(volume.get("source")), bool(volume.get("read_only")))
            continue
        source, target, *mode = volume.split(":")
        mounts[target] = (source, "ro" in (mode[0].split(",") if mode else []))
    return mounts


def test_the_farm_has_its_services(services):
    assert {"postgres", "prefect-server", "register", "cpu-worker", "gpu-worker-0", "gpu-worker-1"} <= set(services)
    assert sorted(_pool(svc) for svc in _workers(services).values()) == ["cpu", "gpu", "gpu"]


def test_each_gpu_worker_reserves_exactly_one_distinct_nvidia_gpu_by_id(services):
    gpu_workers = _gpu_workers(services)
    assert len(gpu_workers) >= 2
    ids = []
    for name, svc in gpu_workers.items():
        devices = _devices(svc)
        assert len(devices) == 1, f"{name} should reserve one device, got {devices}"
        (device,) = devices
        assert device.get("driver") == "nvidia" and "gpu" in device.get("capabilities", []), name
        # count: 1 would hand every replica GPU 0; only device_ids pins a worker to its own GPU.
        assert "count" not in device, f"{name} must name its GPU by device_ids, not count"
        assert len(device.get("device_ids", [])) == 1, f"{name} should name exactly one device id"
        ids.append(str(device["device_ids"][0]))
        assert _env(svc).get("STUDIO_NOVA_DEVICE") == "cuda", name
        # Inside the container the reserved GPU is cuda:0; a host index here would point past it.
        assert "CUDA_VISIBLE_DEVICES" not in _env(svc), name
    assert len(set(ids)) == len(ids), f"two GPU workers share a GPU: {ids}"


def test_gpu_workers_differ_only_in_name_and_device_id(services):
    def normalised(name: str, svc: dict) -> dict:
        svc = json.loads(json.dumps(svc))
        svc["command"] = [part for part in _command(svc) if part != name]
        svc.pop("deploy")
        return svc

    gpu_workers = _gpu_workers(services)
    shapes = [normalised(name, svc) for name, svc in gpu_workers.items()]
    assert all(shape == shapes[0] for shape in shapes), "GPU workers should share everything but name and device"
    assert "x-gpu-worker" in yaml.safe_load(_interpolate(COMPOSE.read_text()))


def test_only_gpu_workers_reserve_gpus(services):
    for name, svc in services.items():
        if name not in _gpu_workers(services):
            assert not _devices(svc), f"{name} reserves a GPU but is not a GPU worker"
    assert _env(services["cpu-worker"]).get("STUDIO_NOVA_DEVICE") == "cpu"


def test_every_worker_reaches_the_prefect_server_and_the_store_by_service_name(services):
    for name, svc in {**_workers(services), "register": services["register"]}.items():
        env = _env(svc)
        api = urlsplit(env["PREFECT_API_URL"])
        assert api.hostname == "prefect-server" and api.port == 4200 and api.path == "/api", name
        store = make_url(env["STUDIO_NOVA_DATABASE_URL"])
        assert store.host in services and store.host == "postgres", name
        assert store.database == "studio_nova", name


def test_the_store_url_uses_the_driver_the_project_installs(services):
    dependencies = [re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0] for dep in PYPROJECT["project"]["dependencies"]]
    for name, svc in _workers(services).items():
        store = make_url(_env(svc)["STUDIO_NOVA_DATABASE_URL"])
        assert store.get_backend_name() == "postgresql", name
        assert store.get_driver_name() == "psycopg2", f"{name}: the store's driver is psycopg2"
        assert "psycopg2-binary" in dependencies
        store.get_dialect().import_dbapi()  # the driver really is importable here


def test_prefect_and_the_store_use_two_databases_of_the_postgres_service(services):
    postgres = services["postgres"]
    prefect_db = make_url(_env(services["prefect-server"])["PREFECT_API_DATABASE_CONNECTION_URL"])
    assert prefect_db.get_driver_name() == "asyncpg" and prefect_db.host == "postgres"
    store_db = make_url(_env(services["cpu-worker"])["STUDIO_NOVA_DATABASE_URL"])
    # Both keep an alembic_version table: they must not share a database.
    assert prefect_db.database != store_db.database
    assert _env(postgres)["POSTGRES_DB"] == prefect_db.database
    init = " ".join(_command(postgres) + list(postgres.get("entrypoint", [])))
    assert f"CREATE DATABASE {store_db.database};" in init
    assert _env(postgres)["POSTGRES_USER"] == prefect_db.username == store_db.username
    assert _env(postgres)["POSTGRES_PASSWORD"] == prefect_db.password == store_db.password
    assert "pg_isready" in postgres["healthcheck"]["test"]


def test_the_server_runs_prefect_with_a_health_check(services):
    server = services["prefect-server"]
    assert server["entrypoint"] == ["prefect"]
    assert _command(server)[:2] == ["server", "start"] and "0.0.0.0" in _command(server)
    assert "/api/health" in " ".join(server["healthcheck"]["test"])
    assert _command(services["register"]) == ["deploy", "--nightly-out", OUT]


def test_depends_on_names_existing_services_and_real_conditions(services):
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, svc in services.items():
        depends = svc.get("depends_on", {})
        for other in depends:
            assert other in services, f"{name} depends on {other!r}, which is not a service"
            if isinstance(depends, dict):
                condition = depends[other]["condition"]
                assert condition in conditions, f"{name}: {condition}"
                if condition == "service_healthy":
                    assert "healthcheck" in services[other], f"{name} waits for {other}'s health, which has no check"
    for name in _workers(services):
        assert services[name]["depends_on"]["register"]["condition"] == "service_completed_successfully"


def test_the_output_media_and_models_are_mounted_alike_everywhere(compose, services):
    studio = _studio_services(services)
    assert set(_workers(services)) | {"register"} <= set(studio)
    mounts = {name: _mounts(svc) for name, svc in studio.items() if name != "prefect-server"}
    for path, read_only in ((OUT, False), (MEDIA, True), (MODELS, True)):
        sources = {name: found[path] for name, found in mounts.items() if path in found}
        assert set(sources) == set(mounts), f"{path} is not mounted in {set(mounts) - set(sources)}"
        assert len(set(sources.values())) == 1, f"{path} comes from different places: {sources}"
        assert next(iter(sources.values()))[1] is read_only, path
    out_source = mounts["cpu-worker"][OUT][0]
    if not out_source.startswith(("/", ".", "~")):
        assert out_source in compose.get("volumes", {}), f"named volume {out_source!r} is not declared"


def test_the_workers_environment_is_valid_studio_nova_settings(services, monkeypatch):
    for name, svc in {**_workers(services), "register": services["register"]}.items():
        env = _env(svc)
        settings = {key.removeprefix("STUDIO_NOVA_").lower() for key in env if key.startswith("STUDIO_NOVA_")}
        unknown = settings - set(Settings.model_fields)
        assert not unknown, f"{name}: no such setting {unknown}"
        assert {"lease_seconds", "database_url"} <= settings, name
        assert int(env["STUDIO_NOVA_LEASE_SECONDS"]) > 0
        for key, value in env.items():
            if key.startswith("STUDIO_NOVA_") and key.removeprefix("STUDIO_NOVA_").lower() in Settings.model_fields:
                monkeypatch.setenv(key, value)
        loaded = Settings()
        assert [str(root) for root in loaded.media_roots] == [MEDIA]
        for folder in (loaded.nova_base, loaded.nova_adapter):
            assert folder is None or folder.startswith(MODELS + "/"), folder
        for key in list(env):
            monkeypatch.delenv(key, raising=False)


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], check=False, capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_accepts_the_file():
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is on PATH")
    result = subprocess.run([*command, "-f", str(COMPOSE), "config", "-q"], check=False, capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr


# -- Dockerfiles -----------------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1]
            continue
        pending += line
        keyword, _, rest = pending.strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, f"{path.name} ends inside a continued line"
    return instructions


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


@pytest.mark.parametrize("flavour", ["gpu", "cpu"])
def test_the_image_pins_the_torch_of_pyproject(flavour):
    text = DOCKERFILES[flavour].read_text()
    pins = set(re.findall(r"torch==([\w.+]+)", text))
    assert pins == {_torch_pin()}, f"{flavour} image pins torch {pins}, pyproject {_torch_pin()}"
    assert f"torch=={_torch_pin()}" in (ROOT / "README.md").read_text()
    runs = [args for keyword, args in _instructions(DOCKERFILES[flavour]) if keyword == "RUN"]
    assert any('--index-url "$TORCH_INDEX_URL"' in run and "torch==" in run for run in runs)
    # The project is installed under the same pin (PIP_CONSTRAINT holds it) with its model extra.
    assert any('pip install ".[model]"' in run for run in runs)
    assert "PIP_CONSTRAINT=" in text and f'echo "torch=={_torch_pin()}" > ' in text


def test_the_gpu_image_takes_torch_from_the_cuda_index_matching_its_base():
    instructions = _instructions(DOCKERFILES["gpu"])
    (index,) = [args.split("=", 1)[1] for keyword, args in instructions if keyword == "ARG"
                and args.startswith("TORCH_INDEX_URL=")]
    match = re.fullmatch(r"https://download\.pytorch\.org/whl/cu(\d+)(\d)", index)
    assert match, index
    base = instructions[0][1].split()[0]
    cuda = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-\S+", base)
    assert cuda, f"the GPU image should start from a pinned nvidia/cuda tag, got {base}"
    assert cuda.groups() == match.groups(), f"base CUDA {cuda.groups()} but torch index {index}"
    (cpu_index,) = [args.split("=", 1)[1] for keyword, args in _instructions(DOCKERFILES["cpu"])
                    if keyword == "ARG" and args.startswith("TORCH_INDEX_URL=")]
    assert cpu_index == "https://download.pytorch.org/whl/cpu"


@pytest.mark.parametrize("flavour", ["gpu", "cpu"])
def test_the_image_runs_a_worker_of_its_pool_as_a_user(flavour):
    instructions = _instructions(DOCKERFILES[flavour])
    stages = set()
    for keyword, args in instructions:
        if keyword != "FROM":
            continue
        image, *alias = args.split()
        if image not in stages:
            _, _, tag = image.partition(":")
            assert tag and tag != "latest", f"base image {image} is not pinned by a tag"
        if alias:
            stages.add(alias[-1])
    final = _final_stage(instructions)
    users = [args for keyword, args in final if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), f"the {flavour} image runs as root"
    assert any(keyword == "WORKDIR" for keyword, _ in final)
    (entrypoint,) = [json.loads(args) for keyword, args in final if keyword == "ENTRYPOINT"]
    assert entrypoint == ["studio-nova"] and "studio-nova" in PYPROJECT["project"]["scripts"]
    (cmd,) = [json.loads(args) for keyword, args in final if keyword == "CMD"]
    assert cmd == ["worker", "--pool", flavour]


@pytest.mark.parametrize("flavour", ["gpu", "cpu"])
def test_the_image_copies_what_pip_install_needs_and_dockerignore_lets_it_through(flavour):
    copied = set()
    for keyword, args in _instructions(DOCKERFILES[flavour]):
        if keyword == "COPY" and not args.startswith("--from"):
            *sources, _ = args.split()
            copied.update(source.rstrip("/") for source in sources)
    needed = set(PYPROJECT["tool"]["setuptools"]["package-dir"].values()) - {"."}
    needed |= {"studio_nova", "pyproject.toml", PYPROJECT["project"]["readme"]}
    assert needed <= copied, f"missing from the {flavour} image: {needed - copied}"
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    for must_stay_out in (".git", "tests"):
        assert f"!{must_stay_out}" not in ignore
    if "*" in ignore:  # an allow-list: every COPY source needs its exception
        assert all(f"!{source}" in ignore for source in copied), f"{copied} vs .dockerignore"


# -- Kubernetes work pool --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool_template() -> dict:
    return json.loads(POOL_TEMPLATE.read_text())


def _defaults(template: dict) -> dict:
    """What Prefect fills placeholders with when nothing overrides them (None defaults are left out)."""
    return {name: spec["default"] for name, spec in template["variables"]["properties"].items()
            if spec.get("default") is not None}


def _rendered_manifest(template: dict) -> dict:
    from prefect.utilities.templating import apply_values

    values = {**_defaults(template), "command": "prefect flow-run execute", "name": "shot-render"}
    return apply_values(template["job_configuration"], values)["job_manifest"]


def test_prefect_accepts_the_pool_template(pool_template):
    from prefect.server.schemas.actions import WorkPoolCreate
    from prefect.utilities.schema_tools import validate

    pool = WorkPoolCreate(name=GPU_POOL_NAME, type="kubernetes", base_job_template=pool_template)
    assert pool.base_job_template == pool_template
    # The defaults satisfy the variables' own schema.
    validate(_defaults(pool_template), pool_template["variables"], raise_on_error=True, preprocess=True)


def test_every_placeholder_is_a_declared_variable_and_every_variable_is_used(pool_template):
    from prefect.utilities.templating import find_placeholders

    used = {placeholder.name for placeholder in find_placeholders(pool_template["job_configuration"])}
    declared = set(pool_template["variables"]["properties"])
    assert used <= declared, f"undeclared: {used - declared}"
    assert declared <= used, f"declared but never used: {declared - used}"
    assert set(pool_template["job_configuration"]) >= {
        "command", "env", "labels", "name", "namespace", "job_manifest", "cluster_config",
        "job_watch_timeout_seconds", "pod_watch_timeout_seconds", "stream_output"}


def test_each_job_asks_for_one_gpu_on_a_gpu_node(pool_template):
    manifest = _rendered_manifest(pool_template)
    from prefect.utilities.templating import find_placeholders

    assert not find_placeholders(manifest), "placeholders left after applying the defaults"
    assert manifest["apiVersion"] == "batch/v1" and manifest["kind"] == "Job"
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "prefect-job"  # Prefect's Kubernetes worker requires this name
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]
    assert pod["nodeSelector"] and any(t.get("key") == "nvidia.com/gpu" for t in pod["tolerations"])
    assert pod["restartPolicy"] == "Never"
    # The image's ENTRYPOINT is studio-nova; the job runs Prefect's command, so it must override it.
    # (the worker turns `args`, its flow-run command, into a list later).
    assert container.get("command"), "the job would run `studio-nova prefect flow-run execute`"
    assert container["args"] == "prefect flow-run execute"


def test_each_job_reads_the_store_and_mounts_the_farm_folders(pool_template, services):
    defaults = _defaults(pool_template)
    env = defaults["env"]
    assert env["STUDIO_NOVA_DEVICE"] == "cuda" and int(env["STUDIO_NOVA_LEASE_SECONDS"]) > 0
    container = _rendered_manifest(pool_template)["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": defaults["store_secret"]}}]
    mounts = {mount["mountPath"]: bool(mount.get("readOnly")) for mount in container["volumeMounts"]}
    assert mounts == {OUT: False, MEDIA: True, MODELS: True}
    # The same folders, at the same paths, as the compose farm's workers.
    assert {path: ro for path, (_, ro) in _mounts(services["gpu-worker-0"]).items()} == mounts
    for key, value in env.items():
        if key.startswith("STUDIO_NOVA_") and key != "STUDIO_NOVA_DEVICE":
            assert _env(services["gpu-worker-0"])[key] == value, key


def _check_fields(value, type_name: str, path: str, problems: list[str], allowed_extra: dict) -> None:
    """Every key of `value` is a field of the Kubernetes model `type_name` (as the API would see it)."""
    from kubernetes.client import models

    if type_name.startswith("list["):
        for i, item in enumerate(value):
            _check_fields(item, type_name[5:-1], f"{path}[{i}]", problems, allowed_extra)
        return
    if type_name.startswith("dict(") or not hasattr(models, type_name):
        return
    model = getattr(models, type_name)
    by_json_name = {json_name: attr for attr, json_name in model.attribute_map.items()}
    for key, item in value.items():
        if key in allowed_extra.get(type_name, ()):
            continue
        if key not in by_json_name:
            problems.append(f"{path}.{key} is not a field of {type_name}")
            continue
        _check_fields(item, model.openapi_types[by_json_name[key]], f"{path}.{key}", problems, allowed_extra)


def test_the_job_manifest_is_a_valid_kubernetes_job(pool_template):
    pytest.importorskip("kubernetes", reason="the `kubernetes` client (its models) is not installed")
    from kubernetes.client import ApiClient, V1Job

    manifest = _rendered_manifest(pool_template)
    # As Prefect's worker hands it over: env from a mapping to a list, args from a string to a list.
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": key, "value": value} for key, value in container["env"].items()]
    container["args"] = shlex.split(container["args"])

    class Response:
        data = json.dumps(manifest)

    job = ApiClient().deserialize(Response(), "V1Job")
    assert isinstance(job, V1Job)
    container = job.spec.template.spec.containers[0]
    assert container.resources.limits["nvidia.com/gpu"] == "1"  # a quantity
    assert [mount.mount_path for mount in container.volume_mounts] == [OUT, MEDIA, MODELS]
    problems: list[str] = []
    # Prefect's default template keeps parallelism/completions in the pod spec and its worker
    # requires them there; Kubernetes ignores them.
    _check_fields(manifest, "V1Job", "job", problems, {"V1PodSpec": ("parallelism", "completions")})
    assert not problems, problems


def test_prefects_kubernetes_worker_builds_the_job(pool_template):
    pytest.importorskip("prefect_kubernetes", reason="prefect-kubernetes is not installed")
    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    async def build() -> dict:
        configuration = await KubernetesWorkerJobConfiguration.from_template_and_values(
            pool_template, {"env": {"EXTRA": "1"}}, client=object()
        )
        configuration.prepare_for_flow_run(FlowRun(id=uuid.uuid4(), name="shot-render", flow_id=uuid.uuid4()))
        return configuration.job_manifest

    container = asyncio.run(build())["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["STUDIO_NOVA_DEVICE"] == "cuda" and env["EXTRA"] == "1"  # the pool's and the deployment's
    assert container["args"] == ["prefect", "flow-run", "execute"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}


def test_the_readmes_say_how_to_create_the_pool_and_build_the_images():
    text = (DEPLOY / "k8s" / "README.md").read_text() + (DEPLOY / "README.md").read_text()
    assert (f"prefect work-pool create {GPU_POOL_NAME} --type kubernetes "
            "--base-job-template deploy/k8s/gpu-work-pool.json") in text
    assert "docker build -f deploy/Dockerfile " in text and "docker build -f deploy/Dockerfile.cpu " in text
    assert "docker compose -f deploy/compose.yaml up" in text
