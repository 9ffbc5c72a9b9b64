"""RDEnv: a task as a Gymnasium environment, and the registration of every shipped task.

Construction is cheap; `reset()` starts a sandbox and lays out the workspace; `step()` runs one
tool call. `submit` ends the episode (terminated), a budget running out ends it (truncated);
either way the workspace is graded in a fresh sandbox and the final reward is the normalized
score. A malformed action or a failing tool is an observation, never an exception.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import structlog

from rdbench.grading import (
    Grade,
    GradingError,
    SandboxFactory,
    default_factory,
    grade_archive,
    refused_grade,
)
from rdbench.grading_kit import shown
from rdbench.lab import LabSession
from rdbench.observation import Observation
from rdbench.resources import environments_dir
from rdbench.sandbox import hostdirs
from rdbench.sandbox.base import (
    AGENT_HOME,
    AGENT_USER,
    ArchiveError,
    Sandbox,
    SandboxConfig,
    SandboxError,
    SandboxUnavailable,
    TrackedSandbox,
)
from rdbench.sandbox.terminal import Terminal, open_terminal
from rdbench.spaces import AnyText
from rdbench.starting_workspace import starting_workspace
from rdbench.task import Budget, TaskSpec, get_task
from rdbench.task_image import prepare_task_image
from rdbench.tool_variants import ToolChoice, describe, parse_tool_set
from rdbench.tools import (
    DEFAULT_TOOLS,
    LAB_TOOLS,
    TOOL_SPECS,
    ActionError,
    ToolCall,
    ToolResult,
    execute_tool,
    parse_action,
    tool_definitions,
)
from rdbench.transcript import Transcript

log = structlog.get_logger()

MAX_OBSERVATION_CHARS = 30_000
MAX_ACTION_CHARS = 1_000_000


def truncate_text(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, keeping its head and tail and saying what was cut."""
    if len(text) <= limit:
        return text
    note = f"\n[... {len(text) - limit} characters cut ...]\n"
    keep = max(limit - len(note), 0)
    head = keep // 2
    return text[:head] + note + text[len(text) - (keep - head) :]


class RDEnv(gym.Env[str, Any]):
    """One rdbench task as a Gymnasium environment.

    Actions are tool calls, `{"tool": "bash", "input": {"command": "ls"}}`, as a dict or as its
    JSON text. Observations are text; each step's `info["observation"]` holds its facts
    (`Observation.facts()`: tool, is_error, exit_code, timed_out, truncated), a `score` call's
    `info["validation"]` its grade, and the final step's info everything a runner records
    (scores, how the episode ended, steps, working and grading time, sandbox, archive).

    The time budget counts working time: wall-clock time since reset, less the agent's waits
    before API retries (`report_usage`) and less the time `score` calls spend grading.

    `channel_dir`, a host folder, is shown read-only in the episode's sandbox at
    /run/rdbench: a person's channel to the runner (rdbench/human_channel.py).

    `tools` entries may carry a tool variant (rdbench/tool_variants.py), e.g.
    `bash(max_output=500)` or `score(off)`: `tools` holds the names of the tools offered,
    `tool_set` every entry in its canonical text (what identity and records hold), and
    `tool_variants` each changed tool's settings.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"]}  # noqa: RUF012 (Gymnasium's API)

    def __init__(
        self,
        task: str | TaskSpec,
        *,
        sandbox: str | SandboxFactory = "auto",
        sandbox_options: dict[str, Any] | None = None,
        tools: list[str] | None = None,
        budget: dict[str, Any] | None = None,
        transcript: Transcript | None = None,
        labels: dict[str, str] | None = None,
        max_observation_chars: int = MAX_OBSERVATION_CHARS,
        render_mode: str | None = None,
        channel_dir: str | Path | None = None,
    ):
        self.task = task if isinstance(task, TaskSpec) else get_task(task)
        if max_observation_chars <= 0:
            raise ValueError(f"Expected max_observation_chars > 0, got {max_observation_chars}")
        self.sandbox_name = sandbox if isinstance(sandbox, str) else "custom"
        self.sandbox_used = self.sandbox_name  # the backend that ran ("auto" picks one)
        self._factory = (
            default_factory(sandbox, **(sandbox_options or {}))
            if isinstance(sandbox, str)
            else sandbox
        )
        self._tool_specs = {**TOOL_SPECS, **self.task.lab_tool_specs}
        self._lab_tools = {tool.name: tool for tool in self.task.tools}
        choices = self._choose_tools(tools)
        self.tool_set = [choice.canonical for choice in choices]
        self.tool_variants = {choice.name: dict(choice.settings) for choice in choices
                              if choice.settings}
        self.tools = [choice.name for choice in choices if not choice.off]
        self._tool_specs = self._told_variants(self._tool_specs)
        self.budget = Budget.model_validate({**self.task.budget.model_dump(), **(budget or {})})
        self.transcript = transcript
        self.labels = dict(labels or {})
        # a person's channel to the runner (rdbench/human_channel.py), shown in the sandbox
        self.channel_dir = None if channel_dir is None else str(channel_dir)
        self.render_mode = render_mode
        self.max_observation_chars = max_observation_chars
        self.observation_space = AnyText(max_observation_chars)
        self.action_space = AnyText(MAX_ACTION_CHARS)
        self.sandbox: Sandbox | None = None
        self._lab: LabSession | None = None  # the episode's lab sandbox (for lab tools)
        self._grading_sandboxes: set[Sandbox] = set()  # gradings in progress, for close()
        self._sandboxes_lock = threading.Lock()
        self._closing = False  # close() was called: no new grading sandbox may start
        self.final_archive: Path | None = None  # the graded workspace, a host file until close
        self._scratch: Path | None = None  # the host folder holding exported workspaces
        self.final_grade: Grade | None = None
        self.grading_error: str | None = None
        self.limit_hit: str | None = None
        self.steps = 0
        self.notepad = ""
        self.tokens_used = 0
        self.cost_usd = 0.0
        self.seed: int | None = None
        self._scored_at = 0  # the step of the last validation grading (0: none yet)
        self._waited_s = 0.0
        self._graded_s = 0.0  # validation gradings that ended: not working time
        self._grading_since = 0.0  # when the validation grading in progress began (0: none)
        self._started = 0.0
        self._ended = 0.0
        self._done = True
        self._last_observation = ""

    def _choose_tools(self, tools: list[str] | None) -> list[ToolChoice]:
        """The tool set: `tools`, each entry a tool with an optional variant (the name
        LAB_TOOLS stands for every lab tool of the task), by default the built-in defaults and
        every lab tool; submit always. ToolVariantError (a ValueError) names the valid tools
        and variants for an unknown one."""
        entries = list(tools or [*DEFAULT_TOOLS, LAB_TOOLS])
        if not self.task.agent.score_tool and tools is None:
            entries.remove("score")
        chosen = parse_tool_set(entries, [*self._tool_specs, LAB_TOOLS],
                                f" for task {self.task.id}")
        named = {choice.name for choice in chosen}
        at = next((i for i, choice in enumerate(chosen) if choice.name == LAB_TOOLS), None)
        if at is not None:
            chosen[at : at + 1] = [ToolChoice(name) for name in self._lab_tools
                                   if name not in named]
        if "submit" not in named:
            chosen.append(ToolChoice("submit"))
        return chosen

    def _told_variants(self, specs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """`specs` with each changed tool's description saying how its variant behaves."""
        told = dict(specs)
        for name, settings in self.tool_variants.items():
            said = describe(name, settings)
            if said and name in told:
                told[name] = {**told[name],
                              "description": f"{told[name]['description']} {said}"}
        return told

    @property
    def elapsed_s(self) -> float:
        """Working time since reset, what the time budget counts: wall-clock time less the
        agent's waits before API retries and less validation gradings (the `score` tool's,
        including one in progress). The final grading comes after the end and is not in it."""
        if not self._started:
            return 0.0
        now = time.monotonic()
        end = self._ended or now
        grading = self._graded_s
        if self._grading_since and not self._ended:
            grading += now - self._grading_since
        return max(end - self._started - self._waited_s - grading, 0.0)

    @property
    def grading_s(self) -> float:
        """Time spent in validation gradings (the `score` tool) this episode, none of it
        charged to working time."""
        return self._graded_s

    def report_usage(self, *, tokens: int, cost_usd: float, retry_wait_s: float = 0.0) -> None:
        """Tell the env the agent's model usage so far in this episode (running totals).

        The `tokens` and `cost_usd` budgets are checked against these after each step, and
        `retry_wait_s` (time spent waiting before API retries) is left out of working time.
        """
        self.tokens_used = tokens
        self.cost_usd = cost_usd
        self._waited_s = retry_wait_s

    @property
    def time_left_s(self) -> float:
        """Working time left in the time budget, in seconds (0 once spent)."""
        return max(self.budget.time_s - self.elapsed_s, 0.0)

    def open_terminal(self, cmd: list[str] | None = None, **options: Any) -> Terminal:
        """An interactive terminal running `cmd` (default bash) in the episode's sandbox as
        the agent user, in its home: how a person works in the sandbox (the human agent).
        `options` are rdbench.sandbox.terminal.open_terminal's (env, size, timeout);
        TerminalUnsupported when the backend has none."""
        if self._done or self.sandbox is None:
            raise RuntimeError("The episode is over or not started; call reset() first")
        return open_terminal(self.sandbox, cmd, user=AGENT_USER, cwd=AGENT_HOME, **options)

    def end_early(self, reason: str) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        """End the episode now (the agent failed, say) and grade the workspace as it is.

        The episode is truncated; `reason` is recorded as an `error` event and in info.
        """
        if self._done or self.sandbox is None:
            raise RuntimeError("The episode is over or not started; call reset() first")
        self._record("error", message=reason, agent=True)
        return self._finish(terminated=False, info={"step": self.steps, "ended_early": reason})

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start a fresh sandbox holding the task's workspace; observe the instructions."""
        super().reset(seed=seed)
        self._close_sandbox()
        self._closing = False
        self._remove_scratch()
        self.labels.setdefault("rdbench.episode", uuid.uuid4().hex[:12])
        prepare_task_image(self.task)  # a task with its own packages: its layer, if missing
        config = self.task.sandbox_config(labels={"rdbench.role": "agent", **self.labels})
        if self.channel_dir is not None:
            config = replace(config, channel_dir=self.channel_dir)
        self.sandbox = self._factory(config)
        self.sandbox_used = getattr(self.sandbox, "backend", self.sandbox_name)
        with starting_workspace(self.task) as folder:  # workspace/ + [workspace] from_grader
            self.sandbox.put_dir(str(folder), AGENT_HOME)
        if self._lab_tools:  # its sandbox starts on the first call
            self._lab = LabSession(self.task, self._grading_factory, self.labels)
        self.steps = self._scored_at = 0
        self.notepad = ""
        self.tokens_used, self.cost_usd, self._waited_s = 0, 0.0, 0.0
        self._graded_s, self._grading_since = 0.0, 0.0
        self.seed = seed
        self._started = time.monotonic()
        self._ended = 0.0
        self._done = False
        self.final_archive = self.final_grade = self.grading_error = self.limit_hit = None
        observation = self._observe(self._briefing())
        definitions = tool_definitions(self.tools, self._tool_specs)
        budget = self.budget.model_dump()
        self._record("reset", task_id=self.task.id, seed=seed, tools=self.tool_set,
                     instructions=self.task.instructions, tool_definitions=definitions,
                     budget=budget, observation=observation, sandbox=self.sandbox_used)
        info = {
            "task_id": self.task.id,
            "tools": definitions,
            "tool_names": list(self.tool_set),  # with variants, as in the reset event
            "tool_variants": {name: dict(settings)
                              for name, settings in self.tool_variants.items()},
            "budget": budget,
            "instructions": self.task.instructions,
            "seed": seed,
            "sandbox": self.sandbox_used,
        }
        return observation, info

    def briefing(self) -> str:
        """What reset() shows the agent first: the instructions, the tools offered and the
        budget (known before reset: integrations show it as their prompt)."""
        return self._briefing()

    def _briefing(self) -> str:
        budget = self.budget
        limits = [f"{budget.steps} steps", f"{budget.time_s:.0f} s of working time"]
        if budget.tokens is not None:
            limits.append(f"{budget.tokens} model tokens")
        if budget.cost_usd is not None:
            limits.append(f"${budget.cost_usd:g} of model use")
        return (
            f"{self.task.instructions.strip()}\n\n"
            f"Tools: {', '.join(self.tools)}. Budget: {', '.join(limits)}. "
            "Call submit when you are done."
        )

    def step(self, action: Any) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        """Run one tool call; the final step's reward is the normalized score.

        `info["observation"]` holds the observation's facts (see `Observation.facts()`), and
        after a `score` call `info["validation"]` its grade (raw_score, normalized_score,
        valid, grading_s).
        """
        if self._done or self.sandbox is None:
            raise RuntimeError("The episode is over or not started; call reset() first")
        self.steps += 1
        info: dict[str, Any] = {"step": self.steps}
        try:
            call = parse_action(action, self.tools, self._tool_specs)
        except ActionError as error:
            self._record("action", raw=str(action)[:2000])
            failed = ToolResult(f"Error: {error}", is_error=True)
            return self._after_step(failed, None, info | {"error": str(error)})
        self._record("action", tool=call.tool, input=call.input)
        info["tool"] = call.tool
        if call.tool == "submit":
            self._record("submit")
            info["observation"] = Observation("", tool="submit").facts()
            return self._finish(terminated=True, info=info)
        try:
            result = self._run(call, info)
        except ActionError as error:
            result = ToolResult(f"Error: {error}", is_error=True)
            info["error"] = str(error)
        except SandboxError as error:
            result = ToolResult(f"Error: the sandbox failed: {error}", is_error=True)
            info["error"] = str(error)
            self._record("error", message=str(error))
        except Exception as error:  # a bad action or a tool failure is never an exception
            message = f"{type(error).__name__}: {error}"
            log.warning("env.tool_failed", tool=call.tool, error=message)
            result = ToolResult(f"Error: the {call.tool} tool failed: {message}", is_error=True)
            info["error"] = message
            self._record("error", message=message)
        return self._after_step(result, call.tool, info)

    def _run(self, call: ToolCall, info: dict[str, Any]) -> ToolResult:
        assert self.sandbox is not None
        if call.tool == "score":
            return self._refused_score() or self._score(info)
        if call.tool == "notepad":
            self.notepad = call.input["content"]
            return ToolResult(f"Notepad saved ({len(self.notepad)} characters).")
        if call.tool in self._lab_tools:
            assert self._lab is not None
            return ToolResult(self._lab.run(self._lab_tools[call.tool], call.input))
        return execute_tool(self.sandbox, call, default_timeout=self.task.sandbox.exec_timeout_s,
                            variant=self.tool_variants.get(call.tool, {}))

    def _refused_score(self) -> ToolResult | None:
        """The refusal of a `score` call that comes sooner than its variant `score(every=N)`
        allows (None: it may grade now)."""
        every = self.tool_variants.get("score", {}).get("every")
        if every is None or not self._scored_at or self.steps >= self._scored_at + every:
            return None
        return ToolResult(
            f"Error: score can be used once every {every} steps; it was last used at step "
            f"{self._scored_at}, so it can be used again at step {self._scored_at + every} "
            f"(this is step {self.steps}).", is_error=True)

    def _score(self, info: dict[str, Any]) -> ToolResult:
        """The `score` tool: grade the workspace on the validation split, with working time
        paused for as long as the grading takes."""
        asked_s = self.elapsed_s  # the working time used when the score was asked
        started = self._grading_since = time.monotonic()
        self._scored_at = self.steps
        try:
            grade = self._grade("validation")
        except GradingError as error:
            info["error"] = str(error)
            self._record("error", message=str(error), infrastructure=True)
            return ToolResult(f"Error: scoring failed (not the workspace's fault): {error}",
                              is_error=True)
        finally:
            grading_s = time.monotonic() - started
            self._graded_s += grading_s
            self._grading_since = 0.0
        info["validation"] = {"raw_score": grade.raw_score,
                              "normalized_score": grade.normalized_score,
                              "valid": grade.valid, "grading_s": round(grading_s, 3)}
        self._record("score", raw_score=grade.raw_score,
                     normalized_score=grade.normalized_score, valid=grade.valid,
                     message=grade.message, grading_s=round(grading_s, 3),
                     elapsed_working_s=round(self.elapsed_s, 3), working_s=round(asked_s, 3))
        if grade.raw_score is None:
            return ToolResult(f"Validation score: none, not valid ({grade.message})")
        # rounded: a score at full precision is an oracle for the hidden labels
        return ToolResult(f"Validation score: {shown(grade.raw_score)} ({grade.message})")

    def _after_step(
        self, result: ToolResult, tool: str | None, info: dict[str, Any]
    ) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        observation = self._observe(result.text)
        facts = Observation(
            observation, tool=tool, is_error=result.is_error, exit_code=result.exit_code,
            timed_out=result.timed_out, truncated=result.truncated or observation != result.text,
        ).facts()
        info["observation"] = facts
        text = result.text if result.withheld is None else result.withheld
        self._record("observation", text=text, shown=observation, **facts)
        limit = self._limit_reached()
        if limit:
            self.limit_hit = limit
            return self._finish(terminated=False, info=info, observation=observation)
        return observation, 0.0, False, False, info

    def _limit_reached(self) -> str | None:
        if self.steps >= self.budget.steps:
            return "steps"
        if self.elapsed_s >= self.budget.time_s:
            return "time"
        if self.budget.tokens is not None and self.tokens_used >= self.budget.tokens:
            return "tokens"
        if self.budget.cost_usd is not None and self.cost_usd >= self.budget.cost_usd:
            return "cost"
        return None

    def _grade(self, split: str) -> Grade:
        """Export the workspace to a host file and grade it. A workspace that is too large or
        cannot be archived or unpacked is an invalid grade; the machinery failing raises
        GradingError or SandboxError. The test split's archive is kept (final_archive)."""
        try:
            archive = self._export(split)
        except ArchiveError as error:
            log.info("workspace.refused", split=split, reason=str(error))
            return refused_grade(split, str(error))  # type: ignore[arg-type]
        if split == "test":
            self.final_archive = archive
        try:
            return grade_archive(
                self.task, archive, split=split, factory=self._grading_factory,  # type: ignore[arg-type]
                labels={k: v for k, v in self.labels.items() if k != "rdbench.role"},
            )
        finally:
            if split != "test":
                archive.unlink(missing_ok=True)

    def _export(self, split: str) -> Path:
        """The agent's workspace as a gzip tar in this env's host folder (streamed there,
        at most [sandbox] workspace_mb)."""
        assert self.sandbox is not None
        try:
            if self._scratch is None:
                self._scratch = hostdirs.make_dir("workspace")
            path = self._scratch / f"{split}-{uuid.uuid4().hex[:8]}.tar.gz"
            with path.open("wb") as file:
                try:
                    exported = self.sandbox.export_dir(
                        AGENT_HOME, file, max_bytes=self.task.sandbox.workspace_bytes
                    )
                except BaseException:
                    path.unlink(missing_ok=True)
                    raise
        except SandboxError:
            raise
        except OSError as error:  # the host's own disk (full, say)
            raise GradingError(f"Could not store the workspace on the host: {error}") from error
        if exported.skipped:
            log.warning("workspace.skipped", split=split, note=exported.skipped)
        return path

    def _finish(
        self, *, terminated: bool, info: dict[str, Any], observation: str | None = None
    ) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        self._done = True
        self._ended = time.monotonic()
        reward = 0.0
        try:
            grade = self._grade("test")
            self.final_grade = grade
            reward = grade.normalized_score
            text = f"Episode over. Final score: {grade.normalized_score:.3f} ({grade.message})"
            info.update(raw_score=grade.raw_score, normalized_score=grade.normalized_score,
                        valid=grade.valid, message=grade.message, infrastructure_error=None)
            self._record("grade", raw_score=grade.raw_score,
                         normalized_score=grade.normalized_score, valid=grade.valid,
                         message=grade.message, details=grade.details,
                         grading_s=round(time.monotonic() - self._ended, 3))
        except (GradingError, SandboxError) as error:
            self.grading_error = str(error)
            text = f"Episode over. Grading failed (not scored): {error}"
            info.update(raw_score=None, normalized_score=None, valid=False, message=text,
                        infrastructure_error=str(error))
            self._record("error", message=str(error), infrastructure=True)
        finally:
            self._close_sandbox()
        info.update(limit_hit=self.limit_hit, steps=self.steps,
                    working_s=round(self.elapsed_s, 3), grading_s=round(self._graded_s, 3),
                    sandbox=self.sandbox_used, workspace_archive=self.final_archive)
        final = self._observe(text if observation is None else f"{observation}\n\n{text}")
        return final, reward, terminated, not terminated, info

    def _observe(self, text: str) -> str:
        self._last_observation = truncate_text(text, self.max_observation_chars)
        return self._last_observation

    def _record(self, event: str, **fields: Any) -> None:
        if self.transcript is not None:
            self.transcript.write(event, self.steps, **fields)  # type: ignore[arg-type]

    def render(self) -> str | None:  # type: ignore[override]
        """The last observation (render_mode "ansi")."""
        return self._last_observation if self.render_mode == "ansi" else None

    def _grading_factory(self, config: SandboxConfig) -> Sandbox:
        """The env's factory, with every grading sandbox (and the lab sandbox) it starts
        remembered until closed, so that close() (from another thread: a run being stopped)
        ends a grading or a lab call in progress."""
        sandbox = TrackedSandbox(self._factory(config), self._forget_grading)
        with self._sandboxes_lock:
            self._grading_sandboxes.add(sandbox)
            closing = self._closing
        if closing:  # close() ran while this sandbox was starting
            sandbox.close()
            raise SandboxUnavailable("The environment was closed; grading was cancelled")
        return sandbox

    def _forget_grading(self, sandbox: Sandbox) -> None:
        with self._sandboxes_lock:
            self._grading_sandboxes.discard(sandbox)

    def _close_sandbox(self) -> None:
        lab, self._lab = self._lab, None
        if lab is not None:
            lab.close()
        sandbox, self.sandbox = self.sandbox, None
        if sandbox is not None:
            sandbox.close()

    def _remove_scratch(self) -> None:
        if self._scratch is not None:
            hostdirs.remove(self._scratch)
            self._scratch = None
        self.final_archive = None

    def close(self) -> None:
        """Remove the sandbox, any grading sandbox in progress and the exported workspace
        (take `final_archive` before); safe to call more than once and from another thread (a
        grading in progress then fails as not scored)."""
        with self._sandboxes_lock:
            self._closing = True
            grading = list(self._grading_sandboxes)
        for sandbox in grading:
            try:
                sandbox.close()
            except Exception as error:  # keep closing the rest
                log.warning("env.close_grading_failed", error=str(error))
        self._close_sandbox()
        self._remove_scratch()
        super().close()


def register_tasks() -> list[str]:
    """Register every shipped task with Gymnasium as `rdbench/<task-id>-v0`; return the ids.

    Only folder names are read here (a task's id is its folder's name), so importing rdbench
    stays cheap and a malformed task fails when it is made, with its own error.
    """
    ids = []
    for toml_path in sorted(environments_dir().glob("*/task.toml")):
        task_id = toml_path.parent.name
        env_id = f"rdbench/{task_id}-v0"
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="rdbench.env:RDEnv", kwargs={"task": task_id})
        ids.append(env_id)
    return ids
