"""A suite run: its configuration (`RunConfig`, saved as `<run>/run.json`), the episodes it
expands into, and the run folder's claim and clean-up on resume.

A run folder holds one configuration. Running the same command again, or
`rdbench run --resume <run>`, finishes it: the runner skips finished episodes and restarts the
others. A different configuration is refused, field by field, before anything runs. How the
episodes are executed (`parallel`, `executor`, `ray_address`) may change between attempts;
everything else is compared.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from rdbench.scheduling import Resources, request_of

log = structlog.get_logger()

RUN_FILE = "run.json"
LOCK_FILE = ".rdbench-run.lock"
RUN_SCHEMA: Literal[1] = 1
EXECUTION_FIELDS = ("parallel", "executor", "ray_address")
"""Fields that say how a run executes, not what it runs: they may change on resume."""


class RunConfigError(ValueError):
    """A run folder's configuration is missing, unreadable, or not the one given."""


ARM_FIELDS = ("label", "scaffold", "tools", "budget")
"""An AgentChoice's arm fields (issue 13); left out of run.json while unset, so a run without
arms keeps its configuration (and its default folder's hash) as before."""


class AgentChoice(BaseModel):
    """One agent of a run, or one arm of a sweep: its name (or module:Class) and options,
    and what the arm changes for its episodes: its scaffold, tool set and budgets (which
    override the run's), and its label (the name its episodes and reports go by)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)
    label: str | None = Field(None, min_length=1, description="the arm's name")
    scaffold: str | None = Field(None, description="canonical: load_scaffold(spec).spec")
    tools: list[str] | None = Field(None, description="the arm's tool set (None: the run's)")
    budget: dict[str, Any] = Field(default_factory=dict, description="over the run's budget")

    @field_validator("scaffold")
    @classmethod
    def _canonical_scaffold(cls, spec: str | None) -> str | None:
        return None if spec is None else canonical_scaffold(spec)

    @model_serializer(mode="wrap")
    def _without_unset_arm(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for name in ARM_FIELDS:
            if data.get(name) in (None, {}):
                data.pop(name, None)
        return data

    def __str__(self) -> str:
        given = " ".join(f"{key}={json.dumps(value)}" for key, value in self.options.items())
        arm = " ".join(f"{name}={json.dumps(getattr(self, name))}" for name in ARM_FIELDS
                       if getattr(self, name) not in (None, {}))
        return " ".join(part for part in (self.name, given, arm) if part)


def canonical_scaffold(spec: str) -> str:
    """The scaffold `spec` as records and identities hold it (every setting, sorted);
    AgentConfigError (a ValueError) saying what is wrong with a bad one."""
    from rdbench.agents.scaffold import load_scaffold

    return load_scaffold(spec).spec


def takes_scaffold(agent: str) -> bool:
    """Whether the agent `agent` (a name or module:Class) takes a `scaffold` option."""
    import inspect

    from rdbench.agents.loading import agent_factory

    try:
        parameters = inspect.signature(agent_factory(agent)).parameters.values()
    except (TypeError, ValueError):
        return True  # a builtin or C callable: making it will say
    return any(p.name == "scaffold" or p.kind is p.VAR_KEYWORD for p in parameters)


def check_choice(choice: AgentChoice) -> None:
    """Make the agent once, with its scaffold, so that a bad name, option, scaffold or a
    missing key fails before any sandbox starts (AgentConfigError or ValueError saying
    what). The agent made is never started, so it is not closed either."""
    from rdbench.agents import AgentConfigError, make_agent

    options = dict(choice.options)
    if choice.scaffold is not None:
        if not takes_scaffold(choice.name):
            raise AgentConfigError(
                f"Agent {choice.name!r} takes no scaffold (given {choice.scaffold!r}); a "
                "scaffold shapes a model's conversation: give it to claude or openai"
            )
        options["scaffold"] = choice.scaffold
    make_agent(choice.name, **options)


class RunConfig(BaseModel):
    """What a run is: tasks x agents x seeds, with budgets, tools and backend; how it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = RUN_SCHEMA
    tasks: list[str] = Field(min_length=1, description="task ids, or absolute task folders")
    agents: list[AgentChoice] = Field(min_length=1)
    runs: int = Field(1, ge=1, description="repetitions: seeds first_seed .. first_seed+runs-1")
    first_seed: int = 0
    sandbox: str = "auto"
    budget: dict[str, Any] = Field(default_factory=dict, description="budget overrides")
    tools: list[str] | None = None
    parallel: int = Field(1, ge=1)
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None

    @model_validator(mode="after")
    def _labels_unique(self) -> RunConfig:
        labels = [agent.label for agent in self.agents if agent.label is not None]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"arm labels {repeated} are given twice; name each arm once")
        return self

    @property
    def seeds(self) -> range:
        """The seeds every task x agent pair runs with."""
        return range(self.first_seed, self.first_seed + self.runs)

    def differences(self, other: RunConfig) -> list[str]:
        """What differs between this (saved) configuration and `other` (given now), one line
        per field; execution fields are not compared."""
        lines = []
        for name in type(self).model_fields:
            if name in EXECUTION_FIELDS:
                continue
            saved, given = getattr(self, name), getattr(other, name)
            if _plain(saved) != _plain(given):
                lines.append(f"{name}: {_plain(saved)!r} in run.json, {_plain(given)!r} now")
        return lines

    def outcome_hash(self) -> str:
        """A short hash of what this run runs (not how): names a default run folder."""
        data = self.model_dump(mode="json", exclude=set(EXECUTION_FIELDS))
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def save(self, folder: Path) -> Path:
        """Write `<folder>/run.json` atomically; return its path."""
        path = folder / RUN_FILE
        temporary = path.with_name(f".{RUN_FILE}.{os.getpid()}.tmp")
        temporary.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)
        return path

    @classmethod
    def load(cls, folder: Path) -> RunConfig:
        """The configuration saved in `<folder>/run.json`."""
        path = folder / RUN_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise RunConfigError(
                f"{path}: missing; {folder} is not a run folder (it has no run.json). Give "
                "the folder a `rdbench run --out` wrote"
            ) from error
        except (OSError, ValueError) as error:
            raise RunConfigError(f"{path}: not readable ({error})") from error
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version != RUN_SCHEMA:
            raise RunConfigError(
                f"{path}: run schema_version {version!r}, this rdbench reads {RUN_SCHEMA}"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise RunConfigError(f"{path}: not a valid run configuration: {error}") from error


def _plain(value: Any) -> Any:
    """A value as JSON would hold it (models as dicts), for comparing and showing."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def run_id_for(folder: Path) -> str:
    """The run's id (the `rdbench.run` label of its sandboxes): the folder's name and a hash
    of its full path, so two runs named alike never share an id."""
    resolved = str(folder.resolve())
    return f"{folder.resolve().name}-{hashlib.sha256(resolved.encode()).hexdigest()[:8]}"


def expand(config: RunConfig, run_id: str) -> list[Any]:
    """The run's episodes as the runner's EpisodeSpecs, seed by seed (so an early stop still
    covers every task and agent), then task, then agent. An agent's arm fields go into its
    episodes: its label, its scaffold, its tool set (else the run's) and its budgets (over
    the run's)."""
    from rdbench.runner import EpisodeSpec
    from rdbench.task import get_task

    tasks = [get_task(name) for name in config.tasks]
    return [
        EpisodeSpec(task=task, agent=agent.name, seed=seed, sandbox=config.sandbox,
                    agent_options=dict(agent.options),
                    budget={**config.budget, **agent.budget}, run_id=run_id,
                    tools=config.tools if agent.tools is None else list(agent.tools),
                    scaffold=agent.scaffold, arm=agent.label)
        for seed in config.seeds
        for task in tasks
        for agent in config.agents
    ]


def request_for(spec: Any) -> Resources:
    """What an episode asks of the machine: its task's sandbox CPUs and memory, times its
    workers for a team episode (one sandbox each, at once)."""
    from rdbench.agents.scaffold import load_scaffold

    workers = load_scaffold(getattr(spec, "scaffold", None)).workers
    return request_of(spec.task.sandbox.cpus * workers, spec.task.sandbox.memory_mb * workers)


def open_run(config: RunConfig, folder: Path) -> RunConfig:
    """Start or resume the run in `folder` with `config`: a new folder gets run.json; one
    holding run.json must hold the same configuration (RunConfigError saying what differs).
    Execution fields are taken from `config` and saved."""
    path = folder / RUN_FILE
    if path.exists():
        saved = RunConfig.load(folder)
        differences = saved.differences(config)
        if differences:
            raise RunConfigError(
                f"{folder} holds a run with another configuration: "
                + "; ".join(differences)
                + f". Resume it as it was with `rdbench run --resume {folder}`, or give "
                "another --out for the new configuration"
            )
    config.save(folder)
    return config


@contextlib.contextmanager
def claim_run(folder: Path) -> Iterator[int | None]:
    """Hold the run folder for this process while the block runs (a second rdbench on the
    same run is refused); yield the pid of the previous process that held it, if any."""
    path = folder / LOCK_FILE
    with open(path, "a+", encoding="ascii") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise RunConfigError(
                f"{folder} is being run by another rdbench now (pid {holder}); wait for it "
                "or stop it before resuming"
            ) from error
        lock.seek(0)
        previous = lock.read().strip()
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield int(previous) if previous.isdigit() else None
        finally:
            path.unlink(missing_ok=True)


def remove_run_sandboxes(run_id: str, previous_pid: int | None) -> list[str]:
    """Remove what an earlier, dead attempt of the run left: Docker containers labelled with
    the run's id, and the bwrap sandboxes and host folders of its process. Call only while
    holding the run (`claim_run`), so none of them belongs to a live attempt."""
    from rdbench.sandbox import SandboxUnavailable, hostdirs
    from rdbench.sandbox.cgroups import remove_leftover_groups

    removed: list[str] = []
    with contextlib.suppress(SandboxUnavailable):  # no engine: no containers
        removed += _remove_containers(run_id)
    if previous_pid is not None and previous_pid != os.getpid() and not hostdirs.process_alive(
        previous_pid
    ):
        removed += hostdirs.remove_dead(pid=previous_pid)
        owner = f"{previous_pid}-"
        removed += remove_leftover_groups(lambda name: name.startswith(owner))
    if removed:
        log.info("run.leftovers_removed", run=run_id, removed=removed)
    return removed


def _remove_containers(run_id: str) -> list[str]:
    import docker.errors

    from rdbench.sandbox.docker import LABEL, connect, list_containers

    client = connect()
    removed = []
    for container in list_containers(client, {"label": f"{LABEL}.run={run_id}"}):
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            continue  # removed meanwhile (by the dead attempt's reaper)
        except docker.errors.APIError as error:  # e.g. a removal already in progress
            log.warning("run.leftover_not_removed", container=container.short_id,
                        error=str(error))
            continue
        removed.append(container.short_id)
    return removed
