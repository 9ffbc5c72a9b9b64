"""Tasks: `TaskSpec` read from `environments/<id>/task.toml`, validation and discovery."""

from __future__ import annotations

import json
import re
import tomllib
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rdbench.resources import environments_dir
from rdbench.sandbox.base import SandboxConfig
from rdbench.tools import LAB_TOOLS, TOOL_SPECS, schema_problem

REQUIRED_DIRS = ("workspace", "grader", "solution")
# Every file a task must have, with what it is for (said when it is missing).
REQUIRED_FILES = {
    "instructions.md": "what the agent is told",
    "grader/score.py": "the grader that prints the verdict; see rdbench/grading_kit.py",
}
TASK_ID_PATTERN = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
TOOL_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
IMAGE_NAME_PATTERN = re.compile(
    r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?$"
)
# A task's own Python packages, layered on the sandbox image: one `name==version` a line.
IMAGE_REQUIREMENTS = "requirements.txt"
PINNED_LINE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?==[A-Za-z0-9.+!_-]+$")


class TaskSpecError(ValueError):
    """A task folder or its task.toml is malformed; the message says where and how to fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(_Strict):
    """Limits of one episode; the first one reached ends it (truncated)."""

    steps: int = Field(100, gt=0, description="tool calls the agent may make")
    time_s: float = Field(3600, gt=0, allow_inf_nan=False, description="working time, seconds")
    tokens: int | None = Field(None, gt=0, description="model tokens, in and out")
    cost_usd: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="model cost, US dollars"
    )


class SandboxResources(_Strict):
    """What the task's sandbox may use."""

    cpus: float = Field(2.0, gt=0)
    memory_mb: int = Field(4096, ge=64)
    pids: int = Field(512, ge=16)
    exec_timeout_s: float = Field(600, gt=0, description="default timeout of one command")
    disk_mb: int = Field(4096, ge=64, description="the sandbox's disk: home, /tmp, /var/tmp")
    workspace_mb: int = Field(500, ge=1, description=(
        "the most the workspace may hold when it is graded (MiB of disk, and of its archive)"))

    @property
    def workspace_bytes(self) -> int:
        """`workspace_mb` in bytes."""
        return self.workspace_mb * 1024**2


class Scoring(_Strict):
    """How the grader's raw score is read and put on the start (0) to reference (1) scale."""

    metric: str = Field(min_length=1)
    direction: Literal["higher", "lower"]
    start: float = Field(description=(
        "raw test score of the start: the untouched workspace, or the level of a cheap "
        "shortcut where the task's instructions say so (the untouched workspace then "
        "normalizes to 0)"))
    reference: float = Field(description="raw test score of the reference solution")
    timeout_s: float = Field(900, gt=0, description="limit of one whole grading run")
    regrade_tolerance: float = Field(0.0, ge=0, allow_inf_nan=False, description=(
        "largest |claimed - re-graded| normalized score `rdbench verify` accepts: 0 for a "
        "deterministic grader (compared to 1e-9), about 3x the measured spread of repeated "
        "gradings for a timing task"))
    checks: list[str] = Field(default_factory=list, description=(
        "workspace files that check a solution the way the grader does (the grader keeps "
        "its own copies): `rdbench verify` warns when a submission changed them"))


class AgentView(_Strict):
    """What the agent may use besides its workspace."""

    score_tool: bool = True
    shaped_rewards: bool = False


class LabTool(_Strict):
    """A tool the task defines ([[tools]] in task.toml): a trusted command run in the episode's
    lab sandbox, apart from the agent's, with the tool's input as JSON on stdin; its stdout is
    what the agent reads. See rdbench/lab.py."""

    name: str = Field(pattern=TOOL_NAME_PATTERN.pattern, description="what the agent calls")
    description: str = Field(min_length=1, description="what the model reads about the tool")
    input_schema: str = Field(
        min_length=1, description="a JSON Schema file (an object's), path inside the task folder"
    )
    command: list[str] = Field(min_length=1, description="run in lab/ inside the lab sandbox")
    timeout_s: float = Field(300, gt=0, allow_inf_nan=False, description="limit of one call")

    def read_schema(self, root: Path) -> dict[str, Any]:
        """The tool's input schema, read from the task folder `root`."""
        return cast(dict[str, Any], json.loads((root / self.input_schema).read_text("utf-8")))


class WorkspaceFiles(_Strict):
    """What the starting workspace holds besides workspace/ ([workspace] in task.toml)."""

    from_grader: list[str] = Field(default_factory=list, description=(
        "grader files the agent sees too, copied into the workspace wherever it is laid out: "
        "'SOURCE:TARGET' (SOURCE relative to grader/, TARGET to the workspace) or 'NAME' (the "
        "same path in both); the grader keeps trusting its own file"))


class GraderFiles(_Strict):
    """What the grading sandbox's /grader holds besides grader/ ([grader] in task.toml)."""

    from_solution: list[str] = Field(default_factory=list, description=(
        "files of the reference solution the grader trusts (a reference to time or compare "
        "against), copied into /grader when it is laid out: 'SOURCE:TARGET' (SOURCE relative "
        "to solution/, TARGET to grader/) or 'NAME'"))


class TaskImage(_Strict):
    """The image the task's sandboxes run ([image] in task.toml); without it, the sandbox
    image, with a layer of the task's requirements.txt when its folder holds one (see
    rdbench/task_image.py and docs/task-images.md)."""

    name: str | None = Field(None, pattern=IMAGE_NAME_PATTERN.pattern, description=(
        "a prebuilt image the Docker engine has ('repository:tag'), run as is by the "
        "task's agent, grading and lab sandboxes; it must hold what the sandbox image holds "
        "(the agent user, /opt/rdbench-venv, /grader); not together with requirements.txt"))


class LabFiles(_Strict):
    """What the lab sandbox's lab/ holds besides the task's lab/ folder ([lab] in task.toml)."""

    from_workspace: list[str] = Field(default_factory=list, description=(
        "files of the starting workspace the lab tools run too, copied into lab/: "
        "'SOURCE:TARGET' (SOURCE relative to the workspace, TARGET to lab/) or 'NAME'"))


def file_pairs(entries: list[str]) -> dict[str, str]:
    """Declared file copies ('SOURCE:TARGET' or 'NAME') as target -> source (as written)."""
    pairs = {}
    for entry in entries:
        source, _, target = entry.partition(":")
        pairs[PurePosixPath(target or source).as_posix()] = source
    return pairs


class TaskSpec(_Strict):
    """One task, as declared by its task.toml. `root` is the task's folder."""

    id: str = Field(pattern=TASK_ID_PATTERN.pattern)
    version: str = Field(min_length=1)
    title: str = Field(min_length=1)
    summary: str = ""
    budget: Budget = Budget()
    sandbox: SandboxResources = SandboxResources()
    scoring: Scoring
    agent: AgentView = AgentView()
    tools: list[LabTool] = Field(default_factory=list, description="the task's lab tools")
    workspace: WorkspaceFiles = WorkspaceFiles()
    grader: GraderFiles = GraderFiles()
    lab: LabFiles = LabFiles()
    image: TaskImage = TaskImage()
    root: Path = Field(exclude=True)

    @property
    def env_id(self) -> str:
        """The Gymnasium id this task is registered under."""
        return f"rdbench/{self.id}-v0"

    @property
    def workspace_dir(self) -> Path:
        """The starting solution and public data, copied to the agent's home (with the files
        of `from_grader` over it; it may be absent when those are all the workspace holds)."""
        return self.root / "workspace"

    @property
    def grader_dir(self) -> Path:
        """Hidden grader files; never enter the agent's sandbox."""
        return self.root / "grader"

    @property
    def lab_dir(self) -> Path:
        """Hidden files of the task's lab tools; copied (root-only) into the lab sandbox."""
        return self.root / "lab"

    @cached_property
    def from_grader(self) -> dict[str, Path]:
        """The grader's files the starting workspace holds ([workspace] from_grader): path in
        the workspace -> host file, laid over workspace/ wherever the workspace is laid out
        (see rdbench.starting_workspace)."""
        return {
            target: self.grader_dir / source
            for target, source in file_pairs(self.workspace.from_grader).items()
        }

    @cached_property
    def grader_from_solution(self) -> dict[str, Path]:
        """The solution's files /grader holds too ([grader] from_solution): path in /grader
        -> host file."""
        return {
            target: self.solution_dir / source
            for target, source in file_pairs(self.grader.from_solution).items()
        }

    def starting_file(self, name: str) -> Path:
        """The host file that holds `name` (a workspace-relative path) of the starting
        workspace: a declared grader file, or workspace/'s own."""
        key = PurePosixPath(name).as_posix()
        return self.from_grader.get(key, self.workspace_dir / name)

    @cached_property
    def lab_from_workspace(self) -> dict[str, Path]:
        """Files of the starting workspace the lab sandbox's lab/ holds too ([lab]
        from_workspace): path in lab/ -> host file."""
        return {
            target: self.starting_file(source)
            for target, source in file_pairs(self.lab.from_workspace).items()
        }

    @cached_property
    def lab_tool_specs(self) -> dict[str, dict[str, Any]]:
        """The lab tools as tool specs (description, input_schema), by name."""
        return {
            tool.name: {
                "description": tool.description, "input_schema": tool.read_schema(self.root)
            }
            for tool in self.tools
        }

    @property
    def image_requirements(self) -> Path | None:
        """The task's requirements.txt (its own packages, layered on the sandbox image), or
        None when its folder holds none."""
        path = self.root / IMAGE_REQUIREMENTS
        return path if path.is_file() else None

    @property
    def image_name(self) -> str | None:
        """The prebuilt image named by [image] name in task.toml, or None."""
        return self.image.name

    @property
    def own_image(self) -> bool:
        """Whether the task runs an image of its own (a layer, or a named image) instead of
        the sandbox image."""
        return self.image_name is not None or self.image_requirements is not None

    @property
    def solution_dir(self) -> Path:
        """Hidden reference solution, laid over the workspace by the oracle."""
        return self.root / "solution"

    def sandbox_config(
        self, *, grading: bool = False, labels: dict[str, str] | None = None,
        image: str | None = None,
    ) -> SandboxConfig:
        """The sandbox this task's episodes (or, with `grading`, its gradings) run in: on
        `image`, by default the task's own image (see rdbench.task_image) or, for a task that
        needs nothing extra, the backend's default (the sandbox image)."""
        if image is None and self.own_image:
            from rdbench.task_image import task_image_tag

            image = task_image_tag(self)
        return SandboxConfig(
            cpus=self.sandbox.cpus,
            memory_mb=self.sandbox.memory_mb,
            pids=self.sandbox.pids,
            exec_timeout_s=self.sandbox.exec_timeout_s,
            disk_mb=self.sandbox.disk_mb,
            image=image,
            labels={"rdbench.task": self.id, **(labels or {})},
            grading=grading,
        )

    @cached_property
    def instructions(self) -> str:
        """What the agent is told."""
        return (self.root / "instructions.md").read_text(encoding="utf-8")


def _describe(error: ValidationError, path: Path) -> str:
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        section, _, key = location.rpartition(".")
        where = f"[{section}] {key}" if section else key
        if item["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown field {where}; remove it or check its spelling")
        elif item["type"] == "missing":
            lines.append(f"{path}: missing required field {where}")
        else:
            lines.append(f"{path}: {where}: {item['msg']}, got {item.get('input')!r}")
    return "\n".join(lines)


def load_task(folder: str | Path) -> TaskSpec:
    """Read and check the task in `folder` (or the folder of a task.toml path)."""
    root = Path(folder)
    if root.name == "task.toml":
        root = root.parent
    toml_path = root / "task.toml"
    if not toml_path.is_file():
        raise TaskSpecError(f"{toml_path}: no task.toml; a task folder needs one (see README)")
    try:
        data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise TaskSpecError(f"{toml_path}: not valid TOML: {error}") from error
    if "root" in data:
        raise TaskSpecError(f"{toml_path}: unknown field root; remove it")
    try:
        spec = TaskSpec(**data, root=root.resolve())
    except ValidationError as error:
        raise TaskSpecError(_describe(error, toml_path)) from error
    if spec.id != root.name:
        raise TaskSpecError(
            f"{toml_path}: id {spec.id!r} must match the folder name {root.name!r}"
        )
    for name in REQUIRED_DIRS:
        if name == "workspace" and spec.workspace.from_grader:
            continue  # the starting workspace may be all declared grader files
        if not (root / name).is_dir():
            raise TaskSpecError(
                f"{root / name}/: missing; every task needs a {name}/ folder"
                + (" (or, for workspace/, files copied in by [workspace] from_grader)"
                   if name == "workspace" else "")
            )
    for name, purpose in REQUIRED_FILES.items():
        if not (root / name).is_file():
            raise TaskSpecError(f"{root / name}: missing; every task needs {name} ({purpose})")
    if spec.scoring.start == spec.scoring.reference:
        raise TaskSpecError(
            f"{toml_path}: [scoring] start and reference are both {spec.scoring.start}; "
            "measure them by grading the starting and the reference solution"
        )
    _check_from_grader(spec, toml_path)
    for name in spec.scoring.checks:
        path = spec.starting_file(name).resolve()
        inside = path.is_relative_to(spec.workspace_dir.resolve()) or (
            PurePosixPath(name).as_posix() in spec.from_grader)
        if not inside or not path.is_file():
            raise TaskSpecError(
                f"{toml_path}: [scoring] checks names {name!r}, which is no file of the "
                "workspace (workspace/ or [workspace] from_grader); give paths relative to "
                "workspace/"
            )
    _check_lab_tools(spec, toml_path)
    _check_lab_files(spec, toml_path)
    _check_grader_files(spec, toml_path)
    _check_image(spec, toml_path)
    return spec


def _check_image(spec: TaskSpec, toml_path: Path) -> None:
    """TaskSpecError when the task both names an image and has a requirements.txt, or when a
    line of its requirements.txt is not pinned as `name==version`."""
    requirements = spec.image_requirements
    if requirements is None:
        return
    if spec.image_name is not None:
        raise TaskSpecError(
            f"{toml_path}: [image] name = {spec.image_name!r} and {requirements} both choose "
            "the task's image; keep one: the named image is run as is, requirements.txt is "
            "layered on the sandbox image"
        )
    pinned = 0
    for number, raw in enumerate(requirements.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if not PINNED_LINE.fullmatch(line):
            raise TaskSpecError(
                f"{requirements}:{number}: {line!r} is not pinned; write one requirement a "
                "line as name==version (for example tabulate==0.9.0), no options, ranges or "
                "URLs, so the layer's tag names exactly what is inside"
            )
        pinned += 1
    if pinned == 0:
        raise TaskSpecError(
            f"{requirements}: names no package; add name==version lines or delete the file"
        )


def _check_entry(entry: str, where: str) -> tuple[PurePosixPath, PurePosixPath]:
    """(source, target) of one declared copy, TaskSpecError unless both are plain relative
    paths that stay inside their folders."""
    parts = entry.split(":")
    if len(parts) > 2 or not all(parts):
        raise TaskSpecError(
            f"{where}: write 'SOURCE:TARGET' or a single 'NAME' (one colon at most, no empty "
            "side)"
        )
    paths = [PurePosixPath(part) for part in parts]
    for path in paths:
        if path.is_absolute() or ".." in path.parts or path.as_posix() == ".":
            raise TaskSpecError(
                f"{where}: {path.as_posix()!r} must be a relative path that stays inside its "
                "folder (no leading /, no ..)"
            )
    return paths[0], paths[-1]


def _check_source(folder: Path, source: PurePosixPath, where: str, fix: str) -> None:
    """TaskSpecError unless `source` is a regular file inside `folder`, reached through no
    symbolic link."""
    path = folder / source
    real = path.resolve()
    if path.is_symlink() or not real.is_relative_to(folder.resolve()) or not real.is_file():
        raise TaskSpecError(
            f"{where}: {path} is no regular file inside {folder.name}/ (missing, a folder, or "
            f"reached through a symbolic link); {fix}"
        )


def _check_targets(
    targets: list[PurePosixPath], folder: Path, where: dict[PurePosixPath, str], name: str,
) -> None:  # fmt: skip
    """TaskSpecError when a target stands where `folder` already has a file or folder, or
    where another target stands (the same path, or one inside the other)."""
    for target in targets:
        for ancestor in [target, *target.parents][:-1]:
            if ancestor != target and ancestor in where:
                raise TaskSpecError(
                    f"{where[target]}: {target.as_posix()!r} lies inside another target, "
                    f"{ancestor.as_posix()!r}; choose another path"
                )
            path = folder / ancestor
            if ancestor == target and (path.exists() or path.is_symlink()):
                raise TaskSpecError(
                    f"{where[target]}: {name}/{target.as_posix()} exists already; delete it "
                    f"from {name}/ (it is copied in) or choose another target"
                )
            if ancestor != target and (path.is_symlink() or path.is_file()):
                raise TaskSpecError(
                    f"{where[target]}: {name}/{ancestor.as_posix()} is a file or a link, so "
                    f"{target.as_posix()!r} cannot be laid out; choose another target"
                )


def _check_copies(
    entries: list[str], table: str, source_dir: Path, target_dir: Path, *,
    copied_in: dict[str, Path] | None = None,
) -> None:  # fmt: skip
    """TaskSpecError unless every entry of `table` (e.g. "[lab] from_workspace", in
    task.toml) copies a regular file of `source_dir` (or one the folder gets copied in,
    `copied_in`) to a new path inside `target_dir`, declared once."""
    where: dict[PurePosixPath, str] = {}
    for entry in entries:
        at = f"{table} entry {entry!r}"
        source, target = _check_entry(entry, at)
        if source.as_posix() not in (copied_in or {}):
            _check_source(source_dir, source, at,
                          f"name a file of {source_dir.name}/, relative to it")
        if target in where:
            raise TaskSpecError(f"{at}: the target {target.as_posix()!r} is declared twice; "
                                "every path may come from one file only")
        where[target] = at
    _check_targets(list(where), target_dir, where, target_dir.name)


def _check_from_grader(spec: TaskSpec, toml_path: Path) -> None:
    """TaskSpecError unless every [workspace] from_grader entry copies a regular file of
    grader/ to a new path inside the workspace."""
    _check_copies(spec.workspace.from_grader, f"{toml_path}: [workspace] from_grader",
                  spec.grader_dir, spec.workspace_dir)


def _check_lab_files(spec: TaskSpec, toml_path: Path) -> None:
    """TaskSpecError unless every [lab] from_workspace entry copies a file of the starting
    workspace (workspace/ or a declared grader file) to a new path inside lab/."""
    if spec.lab.from_workspace and not spec.lab_dir.is_dir():
        raise TaskSpecError(f"{spec.lab_dir}/: missing; [lab] from_workspace copies into it")
    _check_copies(spec.lab.from_workspace, f"{toml_path}: [lab] from_workspace",
                  spec.workspace_dir, spec.lab_dir, copied_in=spec.from_grader)


def _check_grader_files(spec: TaskSpec, toml_path: Path) -> None:
    """TaskSpecError unless every [grader] from_solution entry copies a regular file of
    solution/ to a new path inside grader/."""
    _check_copies(spec.grader.from_solution, f"{toml_path}: [grader] from_solution",
                  spec.solution_dir, spec.grader_dir)


def _check_lab_tools(spec: TaskSpec, toml_path: Path) -> None:
    """TaskSpecError unless every [[tools]] entry can run: a unique name no built-in tool
    has, a schema file the input checker can apply, and a lab/ folder to run in."""
    if spec.tools and not spec.lab_dir.is_dir():
        raise TaskSpecError(
            f"{spec.lab_dir}/: missing; a task with [[tools]] needs a lab/ folder (the "
            "commands run there)"
        )
    names = [tool.name for tool in spec.tools]
    for tool in spec.tools:
        where = f"{toml_path}: [[tools]] {tool.name!r}"
        if tool.name in TOOL_SPECS or tool.name == LAB_TOOLS:
            raise TaskSpecError(
                f"{where}: the name clashes with a built-in tool ({', '.join(TOOL_SPECS)}) or "
                f"the tool-set name {LAB_TOOLS!r}; choose another"
            )
        if names.count(tool.name) > 1:
            raise TaskSpecError(f"{where}: declared more than once; tool names must be unique")
        path = (spec.root / tool.input_schema).resolve()
        if not path.is_relative_to(spec.root) or not path.is_file():
            raise TaskSpecError(
                f"{where}: input_schema {tool.input_schema!r} is no file inside the task "
                "folder; give the path of a JSON Schema file, relative to the folder"
            )
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise TaskSpecError(f"{where}: {tool.input_schema} is not JSON: {error}") from error
        problem = schema_problem(schema, tool.input_schema)
        if problem is None and schema.get("type") != "object":
            problem = f"{tool.input_schema}: a tool's input must be an object (type: object)"
        if problem:
            raise TaskSpecError(f"{where}: {problem}")


def discover_tasks(root: Path | None = None) -> dict[str, TaskSpec]:
    """Every task under `root` (default: the shipped environments/), by id."""
    base = root or environments_dir()
    tasks = {}
    for toml_path in sorted(base.glob("*/task.toml")):
        spec = load_task(toml_path.parent)
        tasks[spec.id] = spec
    return tasks


def get_task(task_id: str, root: Path | None = None) -> TaskSpec:
    """The task called `task_id`, or a path to a task folder."""
    if "/" in task_id or Path(task_id).is_dir():
        return load_task(task_id)
    tasks = discover_tasks(root)
    if task_id not in tasks:
        known = ", ".join(sorted(tasks)) or "none"
        raise TaskSpecError(f"Unknown task {task_id!r}; known tasks: {known}")
    return tasks[task_id]
