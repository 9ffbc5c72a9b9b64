"""Per-task images: a task's requirements.txt layered on the sandbox image, built offline, run
on docker and bwrap; an image named in task.toml run as is; tasks needing nothing keep the
sandbox image."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from helpers import BACKENDS, TOY_TASK
from typer.testing import CliRunner

from rdbench.identity import episode_configuration, identity_hash
from rdbench.image import image_tag
from rdbench.task import TaskSpecError, load_task
from rdbench.task_image import LAYER_DOCKERFILE, layer_context, task_image_tag

LAYERED_TASK = Path(__file__).parent / "fixtures" / "tasks" / "layered-task"


def copy_task(source: Path, destination: Path) -> Path:
    """A writable copy of the task folder `source` under `destination`."""
    return Path(shutil.copytree(source, destination / source.name))


def named_image_task(destination: Path, name: str) -> Path:
    """A copy of the toy task whose task.toml names the image `name`."""
    task_dir = copy_task(TOY_TASK, destination)
    with (task_dir / "task.toml").open("a") as toml:
        toml.write(f'\n[image]\nname = "{name}"\n')
    return task_dir


def configuration(task_dir: Path) -> dict[str, object]:
    """The identity configuration of a null episode of the task in `task_dir`, on docker."""
    return episode_configuration(
        task=load_task(task_dir), agent="null", agent_options={}, scaffold=None, tools=None,
        budget={}, sandbox="docker", seed=0,
    )


# ---- which image a task runs ------------------------------------------------------------------


def test_a_task_that_needs_nothing_extra_runs_the_sandbox_image() -> None:
    task = load_task(TOY_TASK)
    assert task.image_requirements is None and task.image_name is None
    assert task_image_tag(task) == image_tag()
    assert task.sandbox_config().image is None  # the backend's default: the sandbox image
    assert "task_image" not in configuration(TOY_TASK)


def test_a_layered_task_runs_its_layer_in_every_sandbox() -> None:
    task = load_task(LAYERED_TASK)
    tag = task_image_tag(task)
    assert tag.startswith("rdbench-sandbox:") and tag != image_tag()
    assert task.sandbox_config().image == tag
    assert task.sandbox_config(grading=True).image == tag
    assert configuration(LAYERED_TASK)["task_image"] == tag


def test_the_layer_tag_and_the_identity_change_with_the_requirements(tmp_path: Path) -> None:
    task_dir = copy_task(LAYERED_TASK, tmp_path)
    before, identity = task_image_tag(load_task(task_dir)), identity_hash(configuration(task_dir))
    assert task_image_tag(load_task(task_dir)) == before  # the same inputs, the same tag
    (task_dir / "requirements.txt").write_text("tabulate==0.8.10\n")
    assert task_image_tag(load_task(task_dir)) not in {before, image_tag()}
    assert identity_hash(configuration(task_dir)) != identity


@pytest.mark.parametrize(
    "line",
    ["tabulate", "tabulate>=0.9", "tabulate==0.*", "-r other.txt", "--index-url http://x/",
     "https://example.org/tabulate-0.9.0-py3-none-any.whl", "tabulate == 0.9.0 ; x"],
)
def test_an_unpinned_requirement_is_refused_naming_its_line(tmp_path: Path, line: str) -> None:
    task_dir = copy_task(LAYERED_TASK, tmp_path)
    (task_dir / "requirements.txt").write_text(f"# ours\ntabulate==0.9.0\n{line}\n")
    with pytest.raises(TaskSpecError) as caught:
        load_task(task_dir)
    message = str(caught.value)
    assert f"requirements.txt:3: {line.strip()!r} is not pinned" in message
    assert "name==version" in message


def test_pinned_lines_with_comments_and_extras_are_accepted(tmp_path: Path) -> None:
    task_dir = copy_task(LAYERED_TASK, tmp_path)
    (task_dir / "requirements.txt").write_text(
        "# a comment\n\ntabulate==0.9.0  # tables\nrich[jupyter]==13.7.1\n"
    )
    assert load_task(task_dir).image_requirements == task_dir.resolve() / "requirements.txt"


def test_a_requirements_file_naming_nothing_is_refused(tmp_path: Path) -> None:
    task_dir = copy_task(LAYERED_TASK, tmp_path)
    (task_dir / "requirements.txt").write_text("# nothing yet\n")
    with pytest.raises(TaskSpecError, match="names no package; add name==version lines"):
        load_task(task_dir)


def test_requirements_and_an_image_name_together_are_refused(tmp_path: Path) -> None:
    task_dir = copy_task(LAYERED_TASK, tmp_path)
    with (task_dir / "task.toml").open("a") as toml:
        toml.write('\n[image]\nname = "my-lab/image:1"\n')
    with pytest.raises(TaskSpecError, match=r"both choose the task's image; keep one"):
        load_task(task_dir)


def test_a_named_image_is_run_as_is(tmp_path: Path) -> None:
    task_dir = named_image_task(tmp_path, "my-lab/image:1")
    task = load_task(task_dir)
    assert task.image_name == "my-lab/image:1" == task_image_tag(task)
    assert task.sandbox_config(grading=True).image == "my-lab/image:1"
    assert configuration(task_dir)["task_image"] == "my-lab/image:1"


def test_a_malformed_image_name_is_refused(tmp_path: Path) -> None:
    task_dir = named_image_task(tmp_path, "My Image")
    with pytest.raises(TaskSpecError, match=r"\[image\] name"):
        load_task(task_dir)


def test_task_check_reports_an_unpinned_requirement(tmp_path: Path) -> None:
    from rdbench.cli import app

    task_dir = copy_task(LAYERED_TASK, tmp_path)
    (task_dir / "requirements.txt").write_text("tabulate\n")
    result = CliRunner().invoke(app, ["task", "check", str(task_dir)])
    assert result.exit_code == 1
    assert "'tabulate' is not pinned" in result.output


def test_the_layer_context_installs_from_its_wheelhouse_only(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "tabulate-0.9.0-py3-none-any.whl").write_bytes(b"wheel")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    layer_context(ctx, LAYERED_TASK / "requirements.txt", wheels)
    assert sorted(p.relative_to(ctx).as_posix() for p in ctx.rglob("*") if p.is_file()) == [
        "Dockerfile", "constraints.txt", "requirements.txt",
        "wheelhouse/tabulate-0.9.0-py3-none-any.whl",
    ]
    assert "--no-index" in LAYER_DOCKERFILE and "-c /tmp/rdbench-layer/constraints.txt" in (
        LAYER_DOCKERFILE)


# ---- built and run ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def layer_image(sandbox_image: str) -> str:
    """The layered task's image, built (offline) if missing."""
    from rdbench.task_image import ensure_task_image

    return ensure_task_image(load_task(LAYERED_TASK))


@pytest.mark.docker
def test_the_layer_is_built_on_the_sandbox_image(
    docker_client: object, sandbox_image: str, layer_image: str
) -> None:
    image = docker_client.images.get(layer_image)  # type: ignore[attr-defined]
    base = docker_client.images.get(sandbox_image)  # type: ignore[attr-defined]
    assert image.labels.get("rdbench.layer") == "1"
    assert set(base.attrs["RootFS"]["Layers"]) < set(image.attrs["RootFS"]["Layers"])


@pytest.mark.docker
def test_a_layer_build_has_no_network(
    docker_client: object, sandbox_image: str, tmp_path: Path
) -> None:
    from rdbench.image import _build

    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
        "RUN ls /sys/class/net > /interfaces.txt\n"
    )
    tag = f"rdbench-test-offline:{uuid.uuid4().hex[:12]}"
    _build(docker_client, tmp_path, tag=tag, base=sandbox_image, network_mode="none")
    try:
        interfaces = docker_client.containers.run(  # type: ignore[attr-defined]
            tag, ["cat", "/interfaces.txt"], remove=True, network_mode="none"
        )
        assert interfaces.split() == [b"lo"]
    finally:
        docker_client.images.remove(tag)  # type: ignore[attr-defined]


@pytest.fixture
def clashing_task(tmp_path: Path) -> Path:
    """A copy of the layered task asking for another numpy than the sandbox image pins."""
    task_dir = copy_task(LAYERED_TASK, tmp_path)
    (task_dir / "requirements.txt").write_text("tabulate==0.9.0\nnumpy==1.26.4\n")
    return task_dir


@pytest.mark.docker
def test_a_requirement_against_the_images_pins_fails_naming_the_task(
    sandbox_image: str, clashing_task: Path
) -> None:
    from rdbench.image import ImageBuildError
    from rdbench.task_image import ensure_task_image

    task = load_task(clashing_task)
    with pytest.raises(ImageBuildError) as caught:
        ensure_task_image(task)
    message = str(caught.value)
    assert "image layer of task layered-task" in message
    assert "numpy==1.26.4" in message and "image/requirements.txt" in message


@pytest.mark.docker
def test_a_failed_layer_build_is_a_sandbox_start_failure(
    sandbox_image: str, clashing_task: Path
) -> None:
    from rdbench.env import RDEnv
    from rdbench.sandbox import SandboxUnavailable

    env = RDEnv(load_task(clashing_task), sandbox="docker")
    try:
        with pytest.raises(SandboxUnavailable, match="image layer of task layered-task"):
            env.reset()
        assert env.sandbox is None
    finally:
        env.close()


@pytest.mark.docker
def test_a_missing_named_image_is_an_error_naming_the_task_and_the_fix(
    docker_client: object, tmp_path: Path
) -> None:
    from rdbench.image import ImageBuildError
    from rdbench.task_image import ensure_task_image

    name = f"rdbench-test-missing:{uuid.uuid4().hex[:12]}"
    task = load_task(named_image_task(tmp_path, name))
    with pytest.raises(ImageBuildError) as caught:
        ensure_task_image(task, docker_client)
    message = str(caught.value)
    assert f"Task toy-task runs the image {name}" in message and "docker load" in message


@pytest.mark.docker
def test_a_named_image_is_what_the_tasks_sandboxes_run(
    docker_client: object, sandbox_image: str, tmp_path: Path
) -> None:
    from rdbench.env import RDEnv

    repository, tag = "rdbench-test-named", uuid.uuid4().hex[:12]
    name = f"{repository}:{tag}"
    docker_client.images.get(sandbox_image).tag(repository, tag)  # type: ignore[attr-defined]
    try:
        env = RDEnv(load_task(named_image_task(tmp_path, name)), sandbox="docker")
        try:
            env.reset()
            assert env.sandbox is not None
            container = docker_client.containers.get(env.sandbox.id)  # type: ignore[attr-defined]
            assert container.attrs["Config"]["Image"] == name
        finally:
            env.close()
    finally:
        docker_client.images.remove(name)  # type: ignore[attr-defined]  # the tag only


@pytest.mark.parametrize("backend", BACKENDS)
def test_oracle_scores_1_and_null_0_on_the_layer(
    backend: str, layer_image: str, tmp_path: Path
) -> None:
    from rdbench.runner import EpisodeSpec, run_many

    task = load_task(LAYERED_TASK)
    specs = [EpisodeSpec(task=task, agent=agent, sandbox=backend) for agent in ("oracle", "null")]
    oracle, null = run_many(specs, tmp_path)
    assert oracle.sandbox == null.sandbox == backend
    assert oracle.valid and oracle.normalized_score == pytest.approx(1.0), oracle.message
    assert null.valid and null.normalized_score == 0.0, null.message
    assert "answer" in (oracle.message or "")  # the grader's tabulate table
    if backend == "bwrap":  # its root filesystem was exported from the layer
        from rdbench.sandbox.rootfs import METADATA, rootfs_dir

        assert (rootfs_dir(layer_image) / METADATA).is_file()


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_package_is_there_only_in_the_layered_task(backend: str, layer_image: str) -> None:
    from rdbench.env import RDEnv

    probe = ["python3", "-c", "import tabulate; print(tabulate.__version__)"]
    outcome = {}
    for task_dir in (LAYERED_TASK, TOY_TASK):
        env = RDEnv(load_task(task_dir), sandbox=backend)
        try:
            env.reset()
            assert env.sandbox is not None
            outcome[task_dir.name] = env.sandbox.exec(probe, user="agent", timeout=60)
        finally:
            env.close()
    assert outcome["layered-task"].returncode == 0
    assert outcome["layered-task"].stdout.strip() == "0.9.0"
    assert outcome["toy-task"].returncode != 0
    assert "No module named 'tabulate'" in outcome["toy-task"].stderr


@pytest.mark.docker
@pytest.mark.bwrap
def test_image_build_builds_and_exports_a_named_tasks_layer(
    sandbox_image: str, layer_image: str
) -> None:
    from rdbench.cli import app
    from rdbench.sandbox.rootfs import rootfs_dir

    result = CliRunner().invoke(app, ["image", "build", "--task", str(LAYERED_TASK)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:2] == [f"sandbox image: {sandbox_image}", f"task layered-task: {layer_image}"]
    assert f"bwrap root filesystem: {rootfs_dir(layer_image) / 'root'}" in lines
    assert f"bwrap root filesystem: {rootfs_dir(sandbox_image) / 'root'}" in lines
