"""rdbench tasks in Inspect: `inspect eval rdbench/<task-id>` for every shipped task.

Each Inspect task has one sample: its input is the briefing rdbench's env opens an episode with
(the task's instructions, the tools offered and the budget). The sample's setup starts one
`RDEnv` (its sandbox holds the task's workspace) and keeps it in the sample's store; every tool
(bash, python, the file tools, score, the task's lab tools, submit) is one `env.step`, so the
model acts in an rdbench sandbox with rdbench's tools and budget. The default solver is Inspect's
`react()` agent with rdbench's `submit` as its submit tool; any solver given with `--solver`
gets the same tools (setup puts them in the state). The scorer grades the final workspace the
way the env ends an episode (a fresh grading sandbox, the hidden test split): the Score's value
is the normalized score, its metadata the raw score, validity and the grader's message. The env
is closed after scoring and again, whatever happened, by the task's cleanup.

Task parameters (`-T name=value`): `sandbox` (an rdbench backend, default auto), `seed`,
`steps`, `time_s`, `tokens` and `cost_usd` (budget overrides; the sample's model usage is
reported to the env before each step, so its tokens and cost budgets hold), `tools` (rdbench's
tool set, variants included).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import structlog
from inspect_ai import Task, task
from inspect_ai.agent import AgentState, AgentSubmit, as_solver, react
from inspect_ai.dataset import MemoryDataset, Sample
from inspect_ai.model import Model
from inspect_ai.scorer import Score, Scorer, Target, mean, scorer, stderr
from inspect_ai.solver import Generate, Solver, TaskState, solver
from inspect_ai.tool import ToolDef, ToolError, ToolParams
from inspect_ai.util import sample_limits, store

from rdbench.env import RDEnv
from rdbench.resources import environments_dir

log = structlog.get_logger()

STORE_KEY = "rdbench:episode"
SUBMIT = "submit"


class Episode:
    """One sample's rdbench episode: its env, kept in the sample's store under STORE_KEY.

    Copies of a TaskState (Inspect deep-copies states, e.g. for `fork()`) share the episode:
    there is one sandbox per sample. The store shows it as null in logs (it is no JSON).
    """

    def __init__(self, env: RDEnv):
        self.env = env
        self.final: dict[str, Any] | None = None  # the final step's info once the episode ended
        self._lock = anyio.Lock()  # one step at a time: RDEnv is not reentrant

    def __copy__(self) -> Episode:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Episode:
        return self

    @property
    def over(self) -> bool:
        """The episode ended (submit, or a budget ran out) and was graded."""
        return self.final is not None

    async def step(self, tool: str, arguments: dict[str, Any]) -> str:
        """Run one rdbench tool call in the episode's sandbox; its observation text."""
        async with self._lock:
            if self.final is not None:
                raise ToolError(f"The episode is over ({self._ending()}); nothing more can run.")
            self._report_usage()
            action = {"tool": tool, "input": arguments}
            observation, _reward, terminated, truncated, info = await anyio.to_thread.run_sync(
                self.env.step, action
            )
            if terminated or truncated:
                self.final = info
            return observation

    def _report_usage(self) -> None:
        """Tell the env the sample's model usage so far (its tokens and cost budgets)."""
        limits = sample_limits()
        self.env.report_usage(tokens=int(limits.token.usage), cost_usd=float(limits.cost.usage))

    async def finish(self, reason: str) -> dict[str, Any]:
        """The final step's info, ending (and grading) the episode now if it is not over."""
        async with self._lock:
            if self.final is None:
                _obs, _reward, _terminated, _truncated, info = await anyio.to_thread.run_sync(
                    self.env.end_early, reason
                )
                self.final = info
            return self.final

    async def close(self) -> None:
        """Remove the episode's sandboxes and files (idempotent)."""
        await anyio.to_thread.run_sync(self.env.close)

    def _ending(self) -> str:
        final = self.final or {}
        if final.get("limit_hit"):
            return f"the {final['limit_hit']} budget ran out"
        return "submitted" if "ended_early" not in final else "ended early"


def episode_of(state: TaskState | None = None) -> Episode:
    """The rdbench episode of the current sample (or of `state`)."""
    found = (state.store if state is not None else store()).get(STORE_KEY)
    if not isinstance(found, Episode):
        raise RuntimeError(
            "This sample has no rdbench episode: its Task's setup (rdbench_setup) did not run. "
            "Run rdbench tasks as `inspect eval rdbench/<task-id>`, or keep their setup."
        )
    return found


def episode_tool(name: str, description: str, input_schema: dict[str, Any]) -> ToolDef:
    """An Inspect tool that runs the rdbench tool `name` in the sample's episode."""

    async def execute(**kwargs: Any) -> str:
        return await episode_of().step(name, kwargs)

    parameters = ToolParams.model_validate(input_schema)
    for field, schema in parameters.properties.items():  # Inspect wants each one described
        schema.description = schema.description or field.replace("_", " ")
    # max_output=0: the env already cut the observation to its own limit, as rdbench shows it
    return ToolDef(execute, name=name, description=description, parameters=parameters,
                   parallel=False, max_output=0)


@solver
def rdbench_setup(
    task_id: str,
    sandbox: str = "auto",
    seed: int | None = None,
    budget: dict[str, Any] | None = None,
    tools: list[str] | None = None,
) -> Solver:
    """Start the sample's rdbench episode (its sandbox holds the task's workspace), keep it in
    the store and offer its tools to whatever solver follows."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        env = RDEnv(task_id, sandbox=sandbox, tools=tools, budget=budget,
                    labels={"rdbench.inspect_sample": str(state.sample_id)})
        state.store.set(STORE_KEY, Episode(env))  # before reset: cleanup closes a half start
        _observation, info = await anyio.to_thread.run_sync(lambda: env.reset(seed=seed))
        state.tools = [episode_tool(spec["name"], spec["description"], spec["input_schema"])
                       for spec in info["tools"]]
        log.info("inspect.episode_started", task=task_id, sandbox=info["sandbox"],
                 sample=str(state.sample_id))
        return state

    return solve


@solver
def rdbench_agent(model: str | Model | None = None) -> Solver:
    """Inspect's react() agent over the episode's tools, rdbench's submit ending it; it also
    stops when a budget ends the episode. `model`: the model it calls (default: the eval's)."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        tools = [tool for tool in state.tools if ToolDef(tool).name != SUBMIT]
        submit = next(tool for tool in state.tools if ToolDef(tool).name == SUBMIT)

        async def go_on(agent_state: AgentState) -> bool:
            return not episode_of(state).over

        agent = react(prompt=None, tools=tools, model=model, on_continue=go_on,
                      submit=AgentSubmit(tool=submit, keep_in_messages=True))
        return await as_solver(agent)(state, generate)

    return solve


@scorer(metrics=[mean(), stderr()])
def rdbench_scorer() -> Scorer:
    """The episode's final grade: the workspace graded in a fresh grading sandbox on the test
    split (the episode is ended first if the agent stopped without submitting). Value: the
    normalized score; metadata: raw score, validity, the grader's message, how it ended. A
    failure of the grading machinery is an error of the sample, never a 0."""

    async def score(state: TaskState, target: Target) -> Score:
        episode = episode_of(state)
        try:
            final = await episode.finish("the Inspect solver ended without calling submit")
        finally:
            await episode.close()
        if final.get("infrastructure_error"):
            raise RuntimeError(
                f"Grading failed (not the agent's fault; not scored): "
                f"{final['infrastructure_error']}"
            )
        metadata = {key: final.get(key) for key in (
            "raw_score", "normalized_score", "valid", "message", "limit_hit", "ended_early",
            "steps", "working_s", "grading_s", "sandbox")}
        return Score(value=float(final["normalized_score"]), explanation=str(final["message"]),
                     metadata=metadata)

    return score


async def close_episode(state: TaskState) -> None:
    """The task's cleanup: close the sample's env (its sandboxes), whatever happened."""
    episode = state.store.get(STORE_KEY)
    if isinstance(episode, Episode):
        await episode.close()


def rdbench_task(
    task_id: str,
    *,
    sandbox: str = "auto",
    seed: int | None = None,
    steps: int | None = None,
    time_s: float | None = None,
    tokens: int | None = None,
    cost_usd: float | None = None,
    tools: list[str] | None = None,
) -> Task:
    """The Inspect Task for the rdbench task `task_id` (see the module's docstring)."""
    overrides = {"steps": steps, "time_s": time_s, "tokens": tokens, "cost_usd": cost_usd}
    budget = {key: value for key, value in overrides.items() if value is not None}
    probe = RDEnv(task_id, sandbox=sandbox, tools=tools, budget=budget)  # cheap: no sandbox
    spec = probe.task
    sample = Sample(
        id=spec.id, input=probe.briefing(),
        metadata={"task_id": spec.id, "task_version": spec.version, "title": spec.title,
                  "tools": list(probe.tool_set), "budget": probe.budget.model_dump(),
                  "sandbox": sandbox, "seed": seed},
    )
    return Task(
        dataset=MemoryDataset([sample], name=spec.id),
        setup=rdbench_setup(spec.id, sandbox=sandbox, seed=seed, budget=budget, tools=tools),
        solver=rdbench_agent(),
        scorer=rdbench_scorer(),
        cleanup=close_episode,
        version=spec.version,
        metadata={"rdbench_task": spec.id, "scoring": spec.scoring.model_dump()},
    )


def _register(task_id: str) -> Callable[..., Task]:
    """Register `task_id` with Inspect as the task rdbench/<task-id>."""

    def make(
        sandbox: str = "auto",
        seed: int | None = None,
        steps: int | None = None,
        time_s: float | None = None,
        tokens: int | None = None,
        cost_usd: float | None = None,
        tools: list[str] | None = None,
    ) -> Task:
        return rdbench_task(task_id, sandbox=sandbox, seed=seed, steps=steps, time_s=time_s,
                            tokens=tokens, cost_usd=cost_usd, tools=tools)

    make.__name__ = make.__qualname__ = task_id.replace("-", "_")
    make.__doc__ = f"The rdbench task {task_id}: its workspace, tools, budget and grader."
    return task(name=task_id)(make)


def shipped_task_ids() -> list[str]:
    """The ids of the shipped tasks (their folders' names: nothing is parsed here)."""
    return sorted(path.parent.name for path in environments_dir().glob("*/task.toml"))


TASKS: dict[str, Callable[..., Task]] = {task_id: _register(task_id)
                                         for task_id in shipped_task_ids()}

__all__ = [
    "STORE_KEY",
    "TASKS",
    "Episode",
    "episode_of",
    "episode_tool",
    "rdbench_agent",
    "rdbench_scorer",
    "rdbench_setup",
    "rdbench_task",
    "shipped_task_ids",
]
