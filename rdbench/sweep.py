"""A sweep: a grid of arms x tasks x repetitions declared in a TOML file, run as one suite run.

`load_sweep(path)` reads and validates the file (SweepError naming the key to fix), and
`Sweep.run_config()` turns it into the `RunConfig` the runner executes: each `[[arm]]` is an
`AgentChoice` whose label is the arm's name. The validated sweep is saved in the run folder as
`sweep.json`, so that the report (rdbench.experiments) knows the arms' order and the baseline.

    tasks = ["scaling-law"]
    repetitions = 3
    baseline = "plain"
    [budget]
    steps = 30
    [[arm]]
    name = "plain"
    agent = "claude"
    options = { model = "claude-sonnet-4-5" }
    [[arm]]
    name = "notepad"
    agent = "claude"
    options = { model = "claude-sonnet-4-5" }
    scaffold = "notepad"
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rdbench.suite import AgentChoice, RunConfig, canonical_scaffold

SWEEP_FILE = "sweep.json"
ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SweepError(ValueError):
    """A sweep file that cannot be read or is not a valid sweep; the message names the file,
    the key and what to write instead."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BudgetOverride(_Strict):
    """Budgets over the tasks' own: any of steps, time_s, tokens, cost_usd."""

    steps: int | None = Field(None, gt=0, description="tool calls the agent may make")
    time_s: float | None = Field(None, gt=0, allow_inf_nan=False,
                                 description="working time, seconds")
    tokens: int | None = Field(None, gt=0, description="model tokens, in and out")
    cost_usd: float | None = Field(None, gt=0, allow_inf_nan=False,
                                   description="model cost, US dollars")

    def given(self) -> dict[str, Any]:
        """The budgets set, as RunConfig.budget holds them."""
        return self.model_dump(exclude_none=True)


class Arm(_Strict):
    """One `[[arm]]`: an agent with its options, scaffold, tools and budgets, named."""

    name: str = Field(min_length=1, description="the arm's name (letters, digits, . _ -)")
    agent: str = Field(min_length=1, description="an agent name or module:Class")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="the agent's options: model, base_url, ...")
    scaffold: str | None = Field(None, description="e.g. notepad, summary(at=0.7)")
    tools: list[str] | None = Field(None, description="the arm's tool set, over the sweep's")
    budget: BudgetOverride = Field(default_factory=BudgetOverride,
                                   description="the arm's budgets, over the sweep's")

    @field_validator("scaffold")
    @classmethod
    def _canonical_scaffold(cls, spec: str | None) -> str | None:
        return None if spec is None else canonical_scaffold(spec)

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, tools: list[str] | None) -> list[str] | None:
        return check_tool_names(tools)

    @model_validator(mode="after")
    def _checked(self) -> Arm:
        if not ARM_NAME.match(self.name):
            raise ValueError(f"arm name {self.name!r}: use letters, digits, '.', '_' and "
                             "'-' (it names the arm's episode folders)")
        if "scaffold" in self.options:
            raise ValueError(f"arm {self.name!r}: give the scaffold as the arm's `scaffold` "
                             "key, not in options")
        return self

    def choice(self) -> AgentChoice:
        """The arm as the run's AgentChoice (its scaffold made canonical)."""
        return AgentChoice(name=self.agent, options=dict(self.options), label=self.name,
                           scaffold=self.scaffold, tools=self.tools,
                           budget=self.budget.given())


class Sweep(_Strict):
    """A whole sweep file: the grid, how it runs, and the baseline arm."""

    name: str | None = Field(None, description="a title for the report")
    tasks: list[str] = Field(min_length=1, description="task ids, or task folders")
    repetitions: int = Field(1, ge=1, description="seeds first_seed .. first_seed+n-1")
    first_seed: int = 0
    sandbox: str = "auto"
    parallel: int = Field(1, ge=1)
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    budget: BudgetOverride = Field(default_factory=BudgetOverride)
    tools: list[str] | None = None
    baseline: str = Field(min_length=1, description="the arm the others are compared with")
    arm: list[Arm] = Field(min_length=1, description="the [[arm]] tables")

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, tools: list[str] | None) -> list[str] | None:
        return check_tool_names(tools)

    @model_validator(mode="after")
    def _arms_checked(self) -> Sweep:
        names = [arm.name for arm in self.arm]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"arms {repeated} are named twice; give every [[arm]] its own "
                             "name")
        if self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} names no arm; set baseline to one "
                             f"of the [[arm]] names: {', '.join(names)}")
        return self

    @property
    def arm_names(self) -> list[str]:
        """The arms' names, in the file's order."""
        return [arm.name for arm in self.arm]

    def run_config(self) -> RunConfig:
        """The sweep as one suite run: tasks x arms x repetitions."""
        return RunConfig(
            tasks=list(self.tasks), agents=[arm.choice() for arm in self.arm],
            runs=self.repetitions, first_seed=self.first_seed, sandbox=self.sandbox,
            budget=self.budget.given(), tools=self.tools, parallel=self.parallel,
            executor=self.executor, ray_address=self.ray_address,
        )

    def save(self, folder: Path) -> Path:
        """Write `<folder>/sweep.json` (what the report reads); return its path."""
        path = folder / SWEEP_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path


def check_tool_names(tools: list[str] | None) -> list[str] | None:
    """`tools` in canonical form, each a tool with or without a variant's settings (e.g.
    bash(max_output=500)), checked as `--tools` is (rdbench.tool_variants); ValueError naming
    what is wrong and what there is."""
    from rdbench.tool_variants import parse_tool_set
    from rdbench.tools import LAB_TOOLS, TOOL_SPECS

    if tools is None:
        return None
    if not tools:
        raise ValueError("an empty tool list; name at least one tool, or leave tools out")
    return [choice.canonical for choice in parse_tool_set(tools, [*TOOL_SPECS, LAB_TOOLS])]


def load_sweep(path: Path) -> Sweep:
    """The sweep declared in the TOML file `path`; SweepError saying what to fix."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SweepError(f"{path}: cannot be read ({error.strerror or error})") from error
    except tomllib.TOMLDecodeError as error:
        raise SweepError(f"{path}: not valid TOML ({error})") from error
    return parse_sweep(data, str(path))


def parse_sweep(data: dict[str, Any], source: str = "sweep") -> Sweep:
    """The sweep in `data` (a TOML file's tables); SweepError naming each key to fix."""
    try:
        return Sweep.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(_problem(item, data) for item in error.errors())
        raise SweepError(f"{source}: not a valid sweep: {problems}") from error


def load_saved(folder: Path) -> Sweep | None:
    """The sweep saved in `<folder>/sweep.json` by `rdbench sweep`, or None if it has none."""
    path = folder / SWEEP_FILE
    if not path.is_file():
        return None
    try:
        return Sweep.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as error:
        raise SweepError(f"{path}: not a readable sweep ({error})") from error


def _problem(item: Any, data: dict[str, Any]) -> str:
    """One pydantic error as `where: what`, with the keys allowed where a key is unknown."""
    where = _where(item["loc"], data)
    if item["type"] == "extra_forbidden":
        allowed = ", ".join(_allowed_at(item["loc"]))
        return f"{where}: unknown key; the keys allowed here are {allowed}"
    if item["type"] == "missing":
        return f"{where}: missing; add it"
    message = str(item["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _where(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    """A location as the file writes it: `arm[2] (name "x").scaffold`, `budget.steps`."""
    parts: list[str] = []
    node: Any = data
    for key in loc:
        if isinstance(key, int):
            name = node[key].get("name") if isinstance(node, list) and key < len(node) and \
                isinstance(node[key], dict) else None
            parts[-1] += f"[{key + 1}]" + (f" (name {json.dumps(name)})" if name else "")
        else:
            parts.append(str(key))
        node = node[key] if isinstance(node, dict | list) and _has(node, key) else None
    return ".".join(parts)


def _has(node: dict[str, Any] | list[Any], key: Any) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(key, int) and 0 <= key < len(node)


def _allowed_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys of the table that holds the unknown key at `loc`."""
    model: type[BaseModel] = Sweep
    for key in loc[:-1]:
        if isinstance(key, int):
            continue
        tables: dict[str, type[BaseModel]] = {"arm": Arm, "budget": BudgetOverride}
        annotation = tables.get(str(key))
        if annotation is None:
            break
        model = annotation
    return list(model.model_fields)
