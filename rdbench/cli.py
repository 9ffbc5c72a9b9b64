"""The `rdbench` command line: tasks, run, grade, task check, image build, gc, demo."""

from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from rdbench.logs import log_to_stderr

if TYPE_CHECKING:
    from rdbench.records import EpisodeResult
    from rdbench.task import TaskSpec

DEFAULT_TASK = "tabular-credit"
GLOBAL_FLAGS = ("-v", "--verbose", "--log-json", "--no-log-json")


class GlobalFlagsAnywhere(TyperGroup):
    """The top command group, taking the global flags (-v, --log-json) anywhere on the
    command line: `rdbench run ... --log-json` works as `rdbench --log-json run ...`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Move the global flags (up to a `--`) in front of the subcommand, then parse."""
        end = args.index("--") if "--" in args else len(args)
        flags = [arg for arg in args[:end] if arg in GLOBAL_FLAGS]
        rest = [arg for arg in args[:end] if arg not in GLOBAL_FLAGS]
        return super().parse_args(ctx, [*flags, *rest, *args[end:]])


app = typer.Typer(
    cls=GlobalFlagsAnywhere,
    help="rdbench: run AI agents on sandboxed ML research tasks and grade what they leave.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
task_app = typer.Typer(help="Work on task folders.", no_args_is_help=True)
image_app = typer.Typer(help="The sandbox image.", no_args_is_help=True)
sandbox_app = typer.Typer(help="Sandbox backends.", no_args_is_help=True)
app.add_typer(task_app, name="task")
app.add_typer(image_app, name="image")
app.add_typer(sandbox_app, name="sandbox")
export_app = typer.Typer(help="Export runs to other tools' formats.", no_args_is_help=True)
app.add_typer(export_app, name="export")
console = Console()
errors = Console(stderr=True)
LOGGING = {"json_lines": False}  # the global --log-json flag, for the run's progress display
INTERACTIVE_AGENTS = ("human",)  # agents that use the terminal themselves


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
    log_json: Annotated[bool, typer.Option(help="Log JSON lines (for machines).")] = False,
) -> None:
    """Configure logging for the whole command (library code only logs); the flags may also
    come after the subcommand."""
    log_to_stderr(verbose=verbose, json_lines=log_json)
    LOGGING["json_lines"] = log_json


def _fail(message: str) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


def _task(name: str) -> TaskSpec:
    """The task `name` (an id or a folder), or a one-line error listing the known ones."""
    from rdbench.task import TaskSpecError, get_task

    try:
        return get_task(name)
    except TaskSpecError as error:
        raise _fail(str(error)) from error


def _check_out(out: Path) -> bool:
    """Make sure the records' folder `out` can be made and written, before anything starts;
    return True if this made it (so that a failure can take it back)."""
    if out.exists() and not out.is_dir():
        raise _fail(f"--out {out} is a file, not a folder; name a folder for the records")
    made = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".rdbench-write-check-"):
            pass
    except OSError as error:
        if made:
            _remove_if_empty(out)
        reason = error.strerror or str(error)
        raise _fail(
            f"--out {out}: cannot make or write this folder ({reason}); name a folder you "
            "can write, e.g. --out runs"
        ) from error
    return made


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


def _check_sandbox(name: str) -> None:
    """A one-line error, before anything starts, when backend `name` cannot run here."""
    from rdbench.sandbox import SANDBOXES, SandboxUnavailable, get_backend
    from rdbench.sandbox.backend import UnknownBackend, known_names

    if name in SANDBOXES:  # registered in this process: it declares no problem()
        return
    try:
        problem = get_backend(name).problem()  # imports only this backend (all for auto)
    except UnknownBackend as error:
        raise _fail(f"--sandbox {name!r} is not a sandbox backend; use one of: "
                    f"{known_names()}") from error
    except SandboxUnavailable as error:
        problem = str(error)
    if problem is not None:
        raise _fail(f"--sandbox {name}: {problem}")


def _check_at_least(option: str, value: int | None, least: int) -> None:
    if value is not None and value < least:
        raise _fail(f"{option} must be at least {least}, got {value}")


def _check_positive(option: str, value: float | None, unit: str) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise _fail(f"{option} must be a positive number of {unit}, got {value:g}")


@app.command()
def tasks() -> None:
    """List the shipped tasks: id, title, metric, direction and budget."""
    from rdbench.task import discover_tasks

    table = Table(title="rdbench tasks")
    for column in ("id", "title", "metric", "direction", "budget"):
        table.add_column(column)
    for spec in discover_tasks().values():
        budget = f"{spec.budget.steps} steps, {spec.budget.time_s / 60:.0f} min"
        table.add_row(spec.id, spec.title, spec.scoring.metric, spec.scoring.direction, budget)
    console.print(table)


@task_app.command("check")
def task_check(
    path: Annotated[Path, typer.Argument(help="A task folder, or its task.toml.")],
) -> None:
    """Check a task folder: task.toml's fields, instructions.md, workspace/ and grader/."""
    from rdbench.task import TaskSpecError, load_task

    try:
        spec = load_task(path)
    except TaskSpecError as error:
        raise _fail(str(error)) from error
    console.print(f"[green]ok[/] {spec.id} {spec.version}: {spec.title}")


@task_app.command("new")
def task_new(
    task_id: Annotated[str, typer.Argument(metavar="ID", help="The new task's id (my-task).")],
    into: Annotated[Path | None, typer.Option(help=(
        "The folder to make it in (default: ./environments if it exists, else here)."))] = None,
) -> None:
    """Make a working skeleton task: task.toml, instructions, workspace/, grader/, solution/
    and tests/, ready for `task check`, `task test` and `task calibrate` (docs/tasks.md)."""
    from rdbench.authoring import new_task
    from rdbench.task import TaskSpecError

    try:
        root = new_task(task_id, into)
    except TaskSpecError as error:
        raise _fail(str(error)) from error
    console.print(f"[green]made[/] {root}; next: rdbench task test {root}")


@task_app.command("test")
def task_test(
    task: Annotated[str, typer.Argument(metavar="ID", help="Task id or folder.")],
    sandbox: Annotated[list[str] | None, typer.Option(help=(
        "Backends to grade on (repeatable; default: docker and bwrap); the task's own tests "
        "marked for another backend are left out."))] = None,
) -> None:
    """Run the generic checks every task must pass and the task's own tests (its tests/
    folder) with pytest, from a source checkout of rdbench."""
    import os
    import subprocess
    import sys

    spec = _task(task)
    suite = Path(__file__).resolve().parents[1] / "tests"
    generic = suite / "test_tasks_generic.py"
    if not generic.is_file():
        raise _fail(f"{generic} is missing: `rdbench task test` runs the test suite of a "
                    "source checkout of rdbench (git clone, then pip install -e '.[dev]')")
    args = [sys.executable, "-m", "pytest", "-c", str(suite.parent / "pyproject.toml"),
            "--rootdir", str(suite.parent), str(generic)]
    if (spec.root / "tests").is_dir():
        args.append(str(spec.root / "tests"))
    if not (spec.root.parent / "conftest.py").is_file():  # outside environments/
        args += ["-p", "task_fixtures"]
    env = {**os.environ, "RDBENCH_TEST_TASKS": str(spec.root),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(suite),
                                                       os.environ.get("PYTHONPATH")]))}
    if sandbox:
        env["RDBENCH_TEST_BACKENDS"] = ",".join(sandbox)
        others = [name for name in ("docker", "bwrap") if name not in sandbox]
        if others:  # the task's own tests that need another backend are left out
            args += ["-m", " and ".join(f"not {name}" for name in others)]
    raise typer.Exit(code=subprocess.run(args, env=env, check=False).returncode)


@task_app.command("calibrate")
def task_calibrate(
    task: Annotated[str, typer.Argument(metavar="ID", help="Task id or folder.")],
    repeats: Annotated[int, typer.Option(help="Gradings of each of start and reference.")] = 3,
    write: Annotated[bool, typer.Option(help=(
        "Write the anchors (and a timing task's regrade_tolerance) into task.toml."))] = False,
    sandbox: Annotated[str, typer.Option(help="Sandbox backend to grade in.")] = "auto",
) -> None:
    """Grade the start and the reference workspaces --repeats times each on the test split,
    print every raw score and the spread, and with --write put the anchors in task.toml."""
    from rdbench.authoring.calibrate import CalibrationError, calibrate, write_calibration
    from rdbench.grading import GradingError

    _check_at_least("--repeats", repeats, 1)
    _check_sandbox(sandbox)
    spec = _task(task)

    def show(which: str, number: int, raw: float) -> None:
        console.print(f"{which:9} #{number}: raw {raw:.6g}")

    try:
        result = calibrate(spec, repeats, backend=sandbox, on_grade=show)
    except (CalibrationError, GradingError) as error:
        raise _fail(str(error)) from error
    console.print(
        f"start     median {result.start_anchor:.6g} (task.toml {spec.scoring.start:g}), "
        f"spread {result.spread(result.start):.3f} normalized\n"
        f"reference median {result.reference_anchor:.6g} (task.toml "
        f"{spec.scoring.reference:g}), spread {result.spread(result.reference):.3f} normalized"
        + (f"\ntiming task: regrade_tolerance {result.tolerance:g} (3x the reference's spread; "
           f"task.toml {spec.scoring.regrade_tolerance:g})" if result.timing else "")
    )
    if write:
        for line in write_calibration(spec, result):
            console.print(f"[green]wrote[/] {escape(line)}")


def _results_table(results: list[EpisodeResult]) -> Table:
    """The episodes of a run, one row each (names fold, so that it fits 80 columns)."""
    table = Table(title="episodes", box=box.SIMPLE_HEAD)
    for column in ("task", "agent", "seed", "raw", "score", "valid", "steps", "ended"):
        folds = column in ("task", "agent", "ended")
        table.add_column(column, no_wrap=not folds, overflow="fold" if folds else "ellipsis",
                         min_width=6 if folds else None)
    for result in results:
        normalized = result.normalized_score
        table.add_row(
            result.task_id, result.agent, str(result.seed),
            "-" if result.raw_score is None else f"{result.raw_score:.4f}",
            "not graded" if normalized is None else f"{normalized:.3f}",
            str(result.valid), str(result.steps),
            f"limit: {result.limit_hit}" if result.outcome == "limit" else result.outcome,
        )
    return table


@app.command()
def agents() -> None:
    """List the installed agents: built-ins and those of the `rdbench.agents` entry points."""
    from rdbench.agents import installed_agents

    table = Table(title="rdbench agents")
    for column in ("name", "from", "what it is"):
        table.add_column(column)
    for entry in installed_agents():
        table.add_row(entry.name, entry.source, entry.summary)
    console.print(table)
    console.print("Any other agent: --agent module:Class (see docs/agent-protocol.md).")
    scaffolds = Table(title="scaffolds (--scaffold, for claude and openai)")
    for column in ("scaffold", "settings (defaults)", "what it does"):
        scaffolds.add_column(column)
    for name, spec, summary in _scaffold_rows():
        scaffolds.add_row(name, spec, summary)
    console.print(scaffolds)
    console.print("Any other scaffold: --scaffold path/to/mine.py (see docs/experiments.md).")


def _scaffold_rows() -> list[tuple[str, str, str]]:
    """Each shipped scaffold: its name, its spec with default settings, its summary."""
    import inspect

    from rdbench.agents.scaffold import load_scaffold, scaffold_names

    rows = []
    for name in scaffold_names():
        scaffold = load_scaffold(name)
        module = inspect.getmodule(type(scaffold))
        doc = (inspect.getdoc(module) or "").split("\n\n")[0]
        rows.append((name, scaffold.spec, " ".join(doc.split()).removeprefix(f"{name}: ")))
    return rows


def _parse_agent_options(pairs: list[str]) -> dict[str, Any]:
    import json

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _fail(f"--agent-option takes KEY=VALUE, got {pair!r}")
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
    return options


def _agent_options(given: dict[str, Any], extra: list[str]) -> dict[str, Any]:
    options = {key: value for key, value in given.items() if value is not None}
    options.update(_parse_agent_options(extra))
    return options


def _check_agent(choice: Any) -> None:
    """Make the agent of an AgentChoice once (with its scaffold), so a bad name, option,
    scaffold or missing key fails before any sandbox (rdbench.suite.check_choice)."""
    from rdbench.suite import check_choice

    try:
        check_choice(choice)
    except ValueError as error:  # AgentConfigError among them
        raise _fail(str(error)) from error
    except Exception as error:  # the agent's own code failed while being made
        raise _fail(f"The agent {choice.name!r} could not be made: {type(error).__name__}: "
                    f"{error}") from error


@app.command()
def run(
    task: Annotated[list[str] | None, typer.Option(
        help="Task id (see `rdbench tasks`) or folder; repeat for several.")] = None,
    suite: Annotated[str | None, typer.Option(
        help="all: every shipped task (with --task: those too).")] = None,
    agent: Annotated[list[str] | None, typer.Option(
        help="Agent: a name from `rdbench agents` (claude, openai, command, human, oracle, "
        "null) or module:Class; repeat for several. Options for this agent only follow its "
        "name in the same argument: --agent 'claude model=claude-x max_tokens=2000' (the "
        "other option flags apply to every agent). Default: oracle.")] = None,
    sandbox: Annotated[str, typer.Option(
        help="auto (docker if an engine answers, else bwrap), docker or bwrap.")] = "auto",
    out: Annotated[Path | None, typer.Option(
        help="The run's folder (default runs/run-<hash of the configuration>).")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="Finish the run in this folder, as its run.json says.")] = None,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    runs: Annotated[int | None, typer.Option(
        help="Repetitions of each task x agent, seeds seed.. (at least 1; default 1).")
    ] = None,
    episodes: Annotated[int | None, typer.Option(
        help="The same as --runs (kept for older command lines).", hidden=True)] = None,
    parallel: Annotated[int | None, typer.Option(
        help="Episodes at once at most (at least 1; default 1); fewer when their tasks' CPU "
        "and memory requests do not fit the machine.")] = None,
    executor: Annotated[str, typer.Option(
        help="local (threads on this machine) or ray (a Ray cluster's nodes).")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        help="The Ray cluster to join (--executor ray), e.g. ray://head:10001; default: "
        "RAY_ADDRESS, else a local Ray instance.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Override the steps budget.")] = None,
    max_time: Annotated[float | None, typer.Option(
        help="Override the time budget (s) of working time: for a person (--agent human) the "
        "one limit, shown at their prompt.")] = None,
    max_tokens_total: Annotated[int | None, typer.Option(
        help="Override the token budget (all model tokens, in and out).")] = None,
    max_cost: Annotated[float | None, typer.Option(
        help="Override the dollar budget of model use.")] = None,
    tools: Annotated[str | None, typer.Option(
        help="The tool set, comma-separated (submit is always there), e.g. bash,submit or "
        "bash,read_file,write_file,edit_file,score,notepad; `lab` adds the task's own tools "
        "(offered by default). A tool may carry a variant that degrades it, e.g. "
        "'bash(max_output=500),read_file(max_lines=50),score(every=10),edit_file(feedback=off)'"
        ", bash(stderr=off), or NAME(off) to take it away (see rdbench/tool_variants.py).")
    ] = None,
    scaffold: Annotated[str | None, typer.Option(
        help="The scaffold of every --agent (claude, openai): plain, notepad, summary(at=0.7), "
        "successor, team(workers=3), or a file mine.py[:Class]; an agent's own "
        "`scaffold=...` in its --agent overrides it.")] = None,
    model: Annotated[str | None, typer.Option(help="Model (claude, openai).")] = None,
    max_tokens: Annotated[int | None, typer.Option(
        help="Output tokens per model reply (claude, openai).")] = None,
    thinking_budget: Annotated[int | None, typer.Option(
        help="Extended thinking with this many tokens per reply (claude).")] = None,
    thinking: Annotated[str | None, typer.Option(
        help="Thinking mode (claude): adaptive, disabled, or a budget in tokens.")] = None,
    base_url: Annotated[str | None, typer.Option(
        help="API base URL (openai: the server, e.g. http://localhost:8000/v1).")] = None,
    command: Annotated[str | None, typer.Option(
        help="The program to run (command agent), e.g. 'python examples/echo_agent.py'.")
    ] = None,
    agent_option: Annotated[list[str] | None, typer.Option(
        "--agent-option", "-o", help="Any other agent option, KEY=VALUE (repeatable; for "
        "every agent).")
    ] = None,
) -> None:
    """Run agents on tasks (a suite x agents x --runs seeds) and record each episode under the
    run's folder; the same command again, or --resume FOLDER, finishes an interrupted run.

    SIGINT (Ctrl-C), SIGTERM and SIGHUP stop the run: every sandbox of the run is removed,
    unfinished episodes leave no result.json (a repeated run resumes them), exit 128+signal.
    In a person's run (--agent human) SIGHUP, their terminal closing, means they left: their
    workspace is graded and recorded as they left it (ended_by person_left)."""
    from rdbench.calls import split_top_level
    from rdbench.suite import RunConfig, RunConfigError
    from rdbench.tool_variants import parse_tool_set
    from rdbench.tools import LAB_TOOLS, TOOL_SPECS

    _check_at_least("--runs", runs, 1)
    _check_at_least("--episodes", episodes, 1)
    _check_at_least("--parallel", parallel, 1)
    _check_at_least("--max-steps", max_steps, 1)
    _check_at_least("--max-tokens-total", max_tokens_total, 1)
    _check_at_least("--max-tokens", max_tokens, 1)
    _check_at_least("--thinking-budget", thinking_budget, 1)
    _check_positive("--max-time", max_time, "seconds")
    _check_positive("--max-cost", max_cost, "dollars")
    if runs is not None and episodes is not None and runs != episodes:
        raise _fail(f"--runs {runs} and --episodes {episodes} say the same thing; give one")
    if executor not in ("local", "ray"):
        raise _fail(f"--executor must be local or ray, got {executor!r}")
    if ray_address is not None and executor != "ray":
        raise _fail("--ray-address needs --executor ray")
    try:
        entries = split_top_level(tools) if tools else None
        tool_set = ([choice.canonical for choice in
                     parse_tool_set(entries, [*TOOL_SPECS, LAB_TOOLS], " in --tools")]
                    if entries else None)
    except ValueError as error:  # CallSpecError, ToolVariantError
        raise _fail(str(error)) from error
    if tools is not None and not tool_set:
        raise _fail(f"--tools {tools!r} names no tool; available: "
                    f"{', '.join([*TOOL_SPECS, LAB_TOOLS])}")
    options = _agent_options(
        {"model": model, "max_tokens": max_tokens, "thinking": thinking or thinking_budget,
         "base_url": base_url, "command": command},
        agent_option or [],
    )
    budget = {
        key: value
        for key, value in {"steps": max_steps, "time_s": max_time, "tokens": max_tokens_total,
                           "cost_usd": max_cost}.items()
        if value is not None
    }
    execution = {"parallel": parallel or 1, "executor": executor, "ray_address": ray_address}
    given: RunConfig | None = None
    if task or suite is not None:
        given = RunConfig(
            tasks=_suite_tasks(task or [], suite),
            agents=_agent_choices(agent, options, scaffold),
            runs=runs or episodes or 1, first_seed=seed, sandbox=sandbox, budget=budget,
            tools=tool_set, **execution,
        )
    if resume is not None:
        if out is not None and out.resolve() != resume.resolve():
            raise _fail(f"--out {out} and --resume {resume} name different runs; give one")
        try:
            saved = RunConfig.load(resume)
        except RunConfigError as error:
            raise _fail(str(error)) from error
        differences = saved.differences(given) if given is not None else []
        if differences:
            raise _fail(f"--resume {resume}: the options given differ from its run.json: "
                        + "; ".join(differences) + ". Give only --resume (and --parallel, "
                        "--executor) to finish the run as it was")
        config = saved.model_copy(update={
            "parallel": parallel or saved.parallel, "executor": executor,
            "ray_address": ray_address})
        out = resume
    elif given is None:
        raise _fail("Name what to run: --task TASK (repeatable) or --suite all, or "
                    "--resume FOLDER to finish a run")
    else:
        config = given
    out = out or Path("runs") / f"run-{config.outcome_hash()}"
    _run_suite(config, out)


def _suite_tasks(names: list[str], suite: str | None) -> list[str]:
    """The run's tasks: --suite all's shipped ids, then each --task (checked: an id, or a
    task folder kept as its absolute path), without repeats."""
    from rdbench.task import discover_tasks

    if suite not in (None, "all"):
        raise _fail(f"--suite must be all (every shipped task), got {suite!r}")
    chosen = list(discover_tasks()) if suite == "all" else []
    for name in names:
        spec = _task(name)
        shipped = "/" not in name and not Path(name).is_dir()
        entry = spec.id if shipped else str(spec.root)
        if entry not in chosen:
            chosen.append(entry)
    return chosen


def _agent_choices(
    given: list[str] | None, shared: dict[str, Any], scaffold: str | None = None,
) -> list[Any]:
    """Each --agent 'NAME KEY=VALUE ...' as an AgentChoice: the shared options (the option
    flags), then its own; a `scaffold` option (else --scaffold) becomes the choice's
    scaffold, made canonical. Each agent is made once here so a bad one fails before any
    run."""
    import shlex

    from rdbench.suite import AgentChoice, canonical_scaffold

    choices = []
    for text in given or ["oracle"]:
        try:
            name, *pairs = shlex.split(text)
        except ValueError as error:
            raise _fail(f"--agent {text!r}: {error}") from error
        own = _parse_agent_options(pairs)
        options = {**shared, **own}
        spec = options.pop("scaffold", None) or scaffold
        try:
            canonical = None if spec is None else canonical_scaffold(str(spec))
        except ValueError as error:
            raise _fail(f"--agent {name}: scaffold {spec!r}: {error}") from error
        choice = AgentChoice(name=name, options=options, scaffold=canonical)
        _check_agent(choice)
        choices.append(choice)
    if len({str(choice) for choice in choices}) < len(choices):
        raise _fail("The same --agent (with the same options) is given twice; give it once")
    return choices


def _run_suite(config: Any, out: Path) -> None:
    """Run (or finish) the run `config` in `out` and print its episodes."""
    from rdbench.executors import LocalExecutor, RayExecutor, check_machine, import_ray
    from rdbench.progress import make_observer
    from rdbench.report import print_summary
    from rdbench.run_observer import NullObserver
    from rdbench.sandbox import SandboxUnavailable
    from rdbench.scheduling import RequestTooLarge, machine_resources
    from rdbench.suite import (
        RunConfigError,
        claim_run,
        expand,
        open_run,
        remove_run_sandboxes,
        run_id_for,
    )

    people = sorted({choice.name for choice in config.agents
                     if choice.name in INTERACTIVE_AGENTS})  # fmt: skip
    if people and config.parallel > 1:
        raise _fail(f"--parallel {config.parallel} with --agent {people[0]}: a person works "
                    "in one terminal, so their episodes run one at a time; run with "
                    "--parallel 1 (the default)")
    _check_sandbox(config.sandbox)
    run_id = run_id_for(out)
    specs = expand(config, run_id)
    pool: Any
    if config.executor == "ray":
        try:
            import_ray()
        except RuntimeError as error:
            raise _fail(str(error)) from error
        pool = RayExecutor(config.parallel, config.ray_address)
    else:
        try:
            check_machine(specs, machine_resources())
        except RequestTooLarge as error:
            raise _fail(str(error)) from error
        pool = LocalExecutor(config.parallel)
    made_out = _check_out(out)
    # a person at the terminal (the human agent) owns the screen: no live display over it
    interactive = any(choice.name in INTERACTIVE_AGENTS for choice in config.agents)
    observer = NullObserver() if interactive else make_observer(console, LOGGING["json_lines"])

    def work() -> Any:
        with claim_run(out) as previous:
            open_run(config, out)
            remove_run_sandboxes(run_id, previous)
            return pool.run(specs, out, observer)

    try:
        report = _run_stoppable(work, out, made_out, SandboxUnavailable,
                                person_at_terminal=interactive)
    except (RunConfigError, RequestTooLarge) as error:
        raise _fail(str(error)) from error
    console.print(_results_table(report.results))
    print_summary(console, out, skipped=report.skipped)
    ran = len(report.results) - len(report.skipped)
    console.print(f"{len(report.results)} episode(s): {ran} run now, {len(report.skipped)} "
                  "skipped (finished in an earlier attempt)")
    console.print(f"records: {out.resolve()}")


@app.command()
def sweep(
    file: Annotated[Path, typer.Argument(help="The sweep's TOML file (see docs/experiments.md).")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="The run's folder (default runs/<the file's name>).")] = None,
    parallel: Annotated[int | None, typer.Option(
        help="Episodes at once at most, over the file's `parallel`.")] = None,
    report_only: Annotated[bool, typer.Option(
        help="Run nothing: write the report of what the folder holds.")] = False,
) -> None:
    """Run a sweep: arms (agent and model, scaffold, tools, budgets) x tasks x repetitions,
    as one run (parallel, resumable: the same command again runs only what did not finish),
    then write its report: report.md, plots/*.png and report.html, with each arm's paired
    effect against the baseline arm and its 95% interval."""
    from rdbench.experiments.report import write_report
    from rdbench.records import RecordError
    from rdbench.suite import RUN_FILE, RunConfig, RunConfigError
    from rdbench.sweep import SweepError, load_sweep

    _check_at_least("--parallel", parallel, 1)
    try:
        declared = load_sweep(file)
    except SweepError as error:
        raise _fail(str(error)) from error
    out = out or Path("runs") / file.stem
    if not report_only:
        config = declared.run_config()
        if parallel is not None:
            config = config.model_copy(update={"parallel": parallel})
        for arm, choice in zip(declared.arm_names, config.agents, strict=True):
            try:
                _check_agent(choice)
            except typer.Exit:
                errors.print(f"(in the arm {escape(arm)!r} of {escape(str(file))})",
                             highlight=False)
                raise
        if (out / RUN_FILE).exists():
            try:
                differences = RunConfig.load(out).differences(config)
            except RunConfigError as error:
                raise _fail(str(error)) from error
            if differences:
                raise _fail(f"{out} holds a run of another grid: " + "; ".join(differences)
                            + f". Give another --out for the changed {file}")
        made_out = _check_out(out)
        saved = declared.save(out)
        try:
            _run_suite(config, out)
        except typer.Exit:
            if made_out and {path.name for path in out.iterdir()} == {saved.name}:
                saved.unlink()  # refused before anything ran: leave no folder behind
                _remove_if_empty(out)
            raise
    try:
        files = write_report(out)
    except RecordError as error:
        raise _fail(str(error)) from error
    _print_effects(out)
    console.print(f"report: {files.markdown.resolve()}; {files.html.resolve()}; plots: "
                  f"{files.plots[0].parent.resolve()}", highlight=False, soft_wrap=True)


def _print_effects(folder: Path) -> None:
    from rdbench.experiments.report import load_experiment

    experiment = load_experiment(folder)
    table = Table(title=f"effects against {experiment.baseline} (paired, 95% CI)",
                  box=box.SIMPLE_HEAD)
    for column in ("arm", "task", "pairs", "effect", "95% CI"):
        table.add_column(column)
    for effect in experiment.effects:
        interval = ("-" if effect.low is None or effect.high is None
                    else f"[{effect.low:+.3f}, {effect.high:+.3f}]")
        table.add_row(escape(effect.arm), escape(effect.task_id or "all tasks"),
                      str(effect.pairs),
                      "-" if effect.mean is None else f"{effect.mean:+.3f}", interval)
    console.print(table)


def _run_stoppable(
    work: Any, out: Path, made_out: bool, unavailable: type[Exception],
    person_at_terminal: bool = False,
) -> Any:
    """Run `work()` with SIGTERM and SIGHUP stopping it like Ctrl-C (SIGHUP only the person's
    leaving where a person works in this terminal); a stop is one line on stderr and exit
    128+signal, a backend that cannot run a one-line error."""
    from rdbench.runner import RunStopped, signals_stop_the_run

    try:
        with signals_stop_the_run(person_at_terminal=person_at_terminal):
            return work()
    except unavailable as error:
        if made_out:
            _remove_if_empty(out)
        raise _fail(str(error)) from error
    except KeyboardInterrupt as error:
        how = error.args[0] if isinstance(error, RunStopped) else "interrupted (SIGINT)"
        code = 128 + (error.signum if isinstance(error, RunStopped) else 2)
        errors.print(f"{how}: the running episodes' sandboxes were removed; run the same "
                     "command again to resume (finished episodes are kept)", soft_wrap=True)
        raise typer.Exit(code=code) from None


@app.command()
def grade(
    workspace: Annotated[Path, typer.Argument(help="A workspace folder or workspace.tar.gz.")],
    task: Annotated[str, typer.Option(help="Task id or folder.")],
    split: Annotated[str, typer.Option(help="validation or test.")] = "test",
) -> None:
    """Grade a workspace in a fresh sandbox and print the verdict as JSON."""
    import json

    from rdbench.grading import GradingError, grade_archive, grade_workspace
    from rdbench.sandbox.archive import ArchiveError, check_archive
    from rdbench.starting_workspace import starting_workspace

    if split not in ("validation", "test"):
        raise _fail(f"--split must be validation or test, got {split!r}")
    spec = _task(task)
    try:
        if workspace.is_dir() and workspace.resolve() == spec.workspace_dir.resolve():
            with starting_workspace(spec) as folder:  # the start: with [workspace] from_grader
                verdict = grade_workspace(spec, folder, split=split)  # type: ignore[arg-type]
        elif workspace.is_dir():  # archived by the host's GNU tar, links never followed
            verdict = grade_workspace(spec, workspace, split=split)  # type: ignore[arg-type]
        else:  # checked here, unpacked only inside the grading sandbox
            check_archive(workspace)
            verdict = grade_archive(spec, workspace, split=split)  # type: ignore[arg-type]
    except (ArchiveError, GradingError) as error:
        raise _fail(str(error)) from error
    console.print_json(json.dumps(verdict.to_dict()))


@image_app.command("build")
def image_build(
    base: Annotated[
        str,
        typer.Option(help="auto (bootstrap from Debian packages where debootstrap exists), "
                     "or a base image to build on."),
    ] = "auto",
    rebuild: Annotated[bool, typer.Option(help="Build even if the tag exists.")] = False,
    task: Annotated[list[str] | None, typer.Option(
        help="Build this task's own image (an id or a task folder; repeatable) instead of "
             "every shipped task's.")] = None,
) -> None:
    """Build the sandbox image if its inputs changed (the tag carries their hash), and the
    image layer of every task with its own requirements.txt."""
    from rdbench.image import ImageBuildError, ensure_image
    from rdbench.sandbox import SandboxUnavailable, backend_names, get_backend
    from rdbench.sandbox.docker import connect
    from rdbench.task import TaskSpecError, discover_tasks, get_task
    from rdbench.task_image import ensure_task_image

    try:
        client = connect()
        tag = ensure_image(client, base=base, rebuild=rebuild)
        tasks = [get_task(name) for name in task] if task else list(discover_tasks().values())
    except (ImageBuildError, SandboxUnavailable, TaskSpecError) as error:
        raise _fail(str(error)) from error
    console.print(f"sandbox image: {tag}")
    tags = [tag]
    failed = []
    for spec in tasks:
        if not spec.own_image:
            continue
        try:
            own = ensure_task_image(spec, client, rebuild=rebuild, base=base)
        except ImageBuildError as error:
            console.print(f"[bold red]{spec.id}[/]: {escape(str(error))}", highlight=False,
                          soft_wrap=True)
            failed.append(spec.id)
            continue
        console.print(f"task {spec.id}: {own}", highlight=False, soft_wrap=True)
        tags.append(own)
    for name in backend_names():  # each backend makes what it needs from each image
        for built in dict.fromkeys(tags):
            try:
                made = get_backend(name).prepare(built)
            except SandboxUnavailable as error:
                raise _fail(f"{name}: {error}") from error
            if made is not None:
                console.print(made)
    if failed:
        raise _fail(f"the image of task(s) {', '.join(failed)} could not be made (see above)")


@sandbox_app.command("check")
def sandbox_check(
    backend: Annotated[str, typer.Argument(help="A registered sandbox backend's name.")],
    image: Annotated[str | None, typer.Option(
        help="The image its sandboxes start from (default: the backend's).")] = None,
    only: Annotated[list[str] | None, typer.Option(
        help="Run only this check or theme (repeatable).")] = None,
) -> None:
    """Check a sandbox backend against every behaviour rdbench relies on: one line per
    behaviour, with the reason when it fails; exit code 1 when any fails."""
    from rdbench.sandbox import SandboxUnavailable
    from rdbench.sandbox.conformance import check_specs, run_checks

    try:
        specs = {spec.name: spec for spec in check_specs(only)}
        results = run_checks(backend, image=image, only=only)
    except (ValueError, SandboxUnavailable) as error:
        raise _fail(str(error)) from error
    for result in results:
        mark = "[green]pass[/]" if result.passed else "[bold red]FAIL[/]"
        console.print(f"{mark}  {result.name}: {escape(specs[result.name].behaviour)}",
                      highlight=False, soft_wrap=True)  # fmt: skip
        if not result.passed:
            console.print(f"      {escape(result.detail)}", highlight=False, soft_wrap=True)
    failed = [result.name for result in results if not result.passed]
    console.print(f"{backend}: {len(results) - len(failed)} of {len(results)} behaviours hold",
                  highlight=False)  # fmt: skip
    if failed:
        raise typer.Exit(code=1)


@app.command()
def gc(
    everything: Annotated[bool, typer.Option("--all", help="Also remove containers of runs "
                                             "still going.")] = False,
) -> None:
    """Remove sandboxes left behind by runs that ended (crashed or were killed): Docker
    containers, bubblewrap sandboxes' cgroups, and every host folder, disk and mount of theirs
    (a run's reaper normally removes all of these within seconds of its end)."""
    from rdbench.sandbox import SandboxUnavailable, backend_names, get_backend
    from rdbench.sandbox.hostdirs import remove_dead

    for name in backend_names():
        try:
            removed = get_backend(name).remove_leftovers(everything)
        except SandboxUnavailable as error:
            console.print(f"{name}: skipped ({error})")
            continue
        console.print(f"{name}: removed {len(removed)} sandbox(es) {' '.join(removed)}".rstrip())
    others = remove_dead(everything=everything)
    console.print(f"removed {len(others)} other host folder(s) {' '.join(others)}".rstrip())


@app.command()
def demo(
    task: Annotated[str, typer.Option(help="Task id.")] = DEFAULT_TASK,
    out: Annotated[Path, typer.Option(help="Folder for the records.")] = Path("runs/demo"),
) -> None:
    """Run the oracle and the null agent on the default task and print their scores."""
    from datetime import datetime

    from rdbench.runner import EpisodeSpec, run_episode
    from rdbench.sandbox import SandboxUnavailable

    spec = _task(task)
    _check_sandbox("auto")
    made_out = _check_out(out)
    out = out / datetime.now().strftime("%Y%m%d-%H%M%S")

    def both() -> list[EpisodeResult]:
        results = []
        for agent in ("oracle", "null"):
            console.print(f"running {agent} on {task} ...")
            results.append(run_episode(EpisodeSpec(task=spec, agent=agent), out))
        return results

    results = _run_stoppable(both, out, made_out, SandboxUnavailable)
    console.print(_results_table(results))
    for result in results:
        score = result.normalized_score
        shown = "not graded" if score is None else f"{score:.3f}"
        console.print(f"{result.agent}: normalized score {shown}")


@app.command()
def show(
    run_folder: Annotated[Path, typer.Argument(help="A run's folder (its --out), e.g. runs/NAME.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Summarize a run: per task and agent: n, mean normalized score with a 95% bootstrap
    interval, best-of-n, mean cost and working time, failures by kind, unfinished episodes."""
    from rdbench.records import RecordError
    from rdbench.report import load_run, print_summary, rows_json, summarize

    try:
        records = load_run(run_folder)
    except RecordError as error:
        raise _fail(str(error)) from error
    if as_json:
        print(rows_json(summarize(records.results, unfinished=records.unfinished)))
        for problem in records.unreadable:
            errors.print(f"[yellow]not counted:[/] {escape(problem)}", soft_wrap=True)
    else:
        print_summary(console, run_folder)


@app.command()
def transcript(
    episode: Annotated[Path, typer.Argument(
        help="An episode's folder, runs/NAME/<episode> (or its transcript.jsonl).")],
    full: Annotated[bool, typer.Option(help="Show long texts whole, not folded.")] = False,
    play: Annotated[bool, typer.Option(
        "--play", "--cast", help="Replay the terminal session of a person's episode (its "
        "session.cast) on this terminal, with its timing.")] = False,
    speed: Annotated[float, typer.Option(help="--play this many times faster.")] = 1.0,
    max_idle: Annotated[float, typer.Option(
        help="--play: the longest pause (s of the recording) kept.")] = 2.0,
) -> None:
    """Replay an episode's transcript: instructions, actions and observations, the model's
    messages, validation scores with their times, usage, errors and the final grade; with
    --play, the terminal session a person's episode recorded."""
    from rdbench.cast import CAST, CastError, read_cast
    from rdbench.records import RecordError
    from rdbench.replay import replay

    _check_positive("--speed", speed, "times")
    _check_positive("--max-idle", max_idle, "seconds")
    folder = episode if episode.is_dir() else episode.parent
    if play:
        _play_cast(folder / CAST, speed, max_idle)
        return
    try:
        replay(episode, console, full=full)
    except RecordError as error:
        raise _fail(str(error)) from error
    if (folder / CAST).is_file():
        try:
            length = f"{read_cast(folder / CAST).seconds:.0f} s"
        except CastError as error:
            length = f"unreadable: {error}"
        console.print(f"terminal session recorded: {folder / CAST} ({length}); replay it "
                      f"with `rdbench transcript {episode} --play`", soft_wrap=True)


def _play_cast(path: Path, speed: float, max_idle: float) -> None:
    """Replay the cast in `path` on stdout, `speed` times faster, pauses capped at
    `max_idle` s."""
    import sys

    from rdbench.cast import CastError, read_cast
    from rdbench.cast import play as play_cast

    if not path.is_file():
        raise _fail(f"No terminal recording at {path}: only a person's episode (--agent "
                    "human) records its session; give such an episode's folder")
    try:
        cast = read_cast(path)
    except CastError as error:
        raise _fail(str(error)) from error

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    play_cast(cast, write, speed=speed, max_idle=max_idle)


@export_app.command("inspect")
def export_inspect(
    run_folder: Annotated[Path, typer.Argument(
        help="A run's folder (its --out), e.g. runs/NAME, or one episode's folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The folder to write the logs to.")
                   ] = Path("logs"),
    log_format: Annotated[str, typer.Option(
        "--format", help="Inspect's log format: eval (compact) or json.")] = "eval",
) -> None:
    """Write each finished episode of a run as an Inspect eval log (messages, tool calls and
    their outputs, scores, usage), for `inspect view --log-dir OUT` and read_eval_log.
    Needs Inspect: install rdbench with its `inspect` extra."""
    if log_format not in ("eval", "json"):
        raise _fail(f"--format must be eval or json, got {log_format!r}")
    try:
        from rdbench.integrations.inspect.export import ExportError, export_run
    except ImportError as error:
        raise _fail(f"Inspect is not installed ({error}); install it with "
                    "pip install 'rdbench[inspect]'") from error
    try:
        exported = export_run(run_folder, out, log_format=log_format)  # type: ignore[arg-type]
    except ExportError as error:
        raise _fail(str(error)) from error
    for path in exported.logs:
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    if exported.unfinished:
        console.print(f"left out {len(exported.unfinished)} unfinished episode(s): "
                      f"{', '.join(exported.unfinished)}", highlight=False, soft_wrap=True)
    console.print(f"view them with: inspect view --log-dir {out}", highlight=False)


@app.command()
def submit(
    run_folder: Annotated[Path, typer.Argument(help="A finished run's folder, runs/NAME.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The bundle to write.")] = Path(
        "bundle.tar.gz"),
    name: Annotated[str | None, typer.Option(
        help="The submission's name on the leaderboard (default: the run folder's name).")
    ] = None,
    agent_version: Annotated[str | None, typer.Option(help="Your agent's version.")] = None,
    notes: Annotated[str, typer.Option(help="Anything the maintainers should know.")] = "",
) -> None:
    """Pack a finished run into a leaderboard bundle: a manifest (agents, models, tasks and
    their content hashes, image, budgets, seeds, every file's SHA-256) plus every episode's
    result, transcript and final workspace. Check it with `rdbench verify` before sending."""
    from rdbench.bundle import BundleError, make_bundle

    try:
        path = make_bundle(run_folder, out, name=name or run_folder.resolve().name,
                           agent_version=agent_version, notes=notes)
    except BundleError as error:
        raise _fail(str(error)) from error
    console.print(f"bundle: {path.resolve()} ({path.stat().st_size} bytes)")
    console.print(f"check it with: rdbench verify {path}")


@app.command()
def verify(
    bundle: Annotated[Path, typer.Argument(help="A bundle made by `rdbench submit`.")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Where to write the report (default: next to the bundle, "
        "NAME.verified.json).")] = None,
    sandbox: Annotated[str, typer.Option(help="Sandbox backend to re-grade in.")] = "auto",
    task_dir: Annotated[list[Path] | None, typer.Option(
        "--task-dir", help="A task folder to verify against besides the shipped tasks "
        "(repeatable).")] = None,
) -> None:
    """Verify a bundle: every hash, the tasks against the installed ones, a re-grade of every
    final workspace, each transcript against its result, a scan for gaming. Prints the verdict
    and numbered findings, writes the report; exits 1 when the bundle is rejected."""
    from rdbench.bundle import BundleError
    from rdbench.task import discover_tasks
    from rdbench.verify import verify_bundle

    _check_sandbox(sandbox)
    tasks = discover_tasks()
    for folder in task_dir or []:
        spec = _task(str(folder.resolve()))
        tasks[spec.id] = spec
    try:
        report = verify_bundle(bundle, backend=sandbox, tasks=tasks)
    except BundleError as error:
        raise _fail(f"rejected: {error}") from error
    target = out or bundle.with_name(bundle.name.removesuffix(".gz").removesuffix(".tar")
                                     + ".verified.json")
    target.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    style = {"verified": "green", "verified with warnings": "yellow"}.get(report.verdict, "red")
    console.print(f"[bold {style}]{report.verdict}[/]: {escape(report.name)} "
                  f"({len(report.findings)} finding(s))")
    for number, finding in enumerate(report.findings, start=1):
        where = " ".join(part for part in (finding.episode_id, finding.path) if part)
        console.print(f"{number}. {escape(f'[{finding.severity}]')} {finding.code}: "
                      f"{escape(finding.message)}" + (f" ({escape(where)})" if where else ""),
                      soft_wrap=True, highlight=False)
    console.print(f"report: {target.resolve()}")
    if report.verdict == "rejected":
        raise typer.Exit(code=1)


@app.command()
def leaderboard(
    inputs: Annotated[list[Path], typer.Argument(
        help="Bundles (bundle.tar.gz, with bundle.verified.json beside it when verified), "
        "verified.json files, or run folders (runs/NAME).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The site's folder.")] = Path("site"),
    experiment: Annotated[list[Path] | None, typer.Option(
        help="A sweep's run folder (rdbench sweep -o FOLDER) to show under Experiments: its "
        "arms' effects against the baseline (repeatable).")] = None,
) -> None:
    """Make the leaderboard: a static site (index.html: a sortable table, per-task bars with
    95% intervals, score against working time; a transcript page per episode), the plots as
    PNG under plots/ and the Markdown table leaderboard.md. Unverified and rejected
    submissions are shown apart."""
    from rdbench.experiments.report import section_of
    from rdbench.leaderboard import aggregate, load_inputs, write_site
    from rdbench.leaderboard.inputs import LeaderboardInputError
    from rdbench.records import RecordError

    try:
        submissions = load_inputs(inputs)
    except LeaderboardInputError as error:
        raise _fail(str(error)) from error
    board = aggregate(submissions)
    try:
        sections = [section_of(folder, "h3") for folder in experiment or []]
    except RecordError as error:
        raise _fail(f"--experiment: {error}") from error
    index = write_site(board, out, sections)
    ranked = sum(row.kind != "reference" for row in board.rows)
    console.print(f"leaderboard: {ranked} verified row(s), {len(board.apart)} unverified or "
                  f"rejected, {len(board.tasks)} task(s)", highlight=False)
    console.print(f"site: {index}; plots: {out / 'plots'}; Markdown: "
                  f"{out / 'leaderboard.md'}", highlight=False, soft_wrap=True)
