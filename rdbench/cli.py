"""The `rdbench` command line: tasks, run, grade, task check, image build, gc, demo."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

DEFAULT_TASK = "tabular-credit"

app = typer.Typer(
    help="rdbench: run AI agents on sandboxed ML research tasks and grade what they leave.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
task_app = typer.Typer(help="Work on task folders.", no_args_is_help=True)
image_app = typer.Typer(help="The sandbox image.", no_args_is_help=True)
app.add_typer(task_app, name="task")
app.add_typer(image_app, name="image")
console = Console()
errors = Console(stderr=True)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
    log_json: Annotated[bool, typer.Option(help="Log JSON lines (for machines).")] = False,
) -> None:
    """Configure logging for the whole command (library code only logs)."""
    level = logging.INFO if verbose or log_json else logging.WARNING
    renderer: Any = (
        structlog.processors.JSONRenderer() if log_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


def _fail(message: str) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


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


def _results_table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="episodes")
    for column in ("task", "agent", "seed", "raw", "score", "valid", "steps", "ended"):
        table.add_column(column, no_wrap=True)
    for result in results:
        normalized = result["normalized_score"]
        table.add_row(
            result["task_id"], result["agent"], str(result["seed"]),
            "-" if result["raw_score"] is None else f"{result['raw_score']:.4f}",
            "not graded" if normalized is None else f"{normalized:.3f}",
            str(result["valid"]), str(result["steps"]),
            result.get("ended_by") or result["limit_hit"]
            or ("submit" if result["terminated"] else "-"),
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


def _check_agent(name: str, options: dict[str, Any]) -> None:
    """Make the agent once, so a bad name, option or missing key fails before any sandbox."""
    from rdbench.agents import AgentConfigError, make_agent

    try:
        made = make_agent(name, **options)
    except (AgentConfigError, ValueError) as error:
        raise _fail(str(error)) from error
    close = getattr(made, "close", None)
    if callable(close):
        close()


@app.command()
def run(
    task: Annotated[str, typer.Option(help="Task id (see `rdbench tasks`) or folder.")],
    agent: Annotated[str, typer.Option(
        help="Agent: a name from `rdbench agents` (claude, openai, command, human, oracle, "
        "null) or module:Class.")] = "oracle",
    sandbox: Annotated[str, typer.Option(
        help="auto (docker if an engine answers, else bwrap), docker or bwrap.")] = "auto",
    out: Annotated[Path, typer.Option(help="Folder for the episodes' records.")] = Path("runs"),
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    episodes: Annotated[int, typer.Option(min=1, help="Episodes, seeds seed..")] = 1,
    parallel: Annotated[int, typer.Option(min=1, help="Episodes at once.")] = 1,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Override the steps budget.")] = None,
    max_time: Annotated[float | None, typer.Option(help="Override the time budget (s).")] = None,
    max_tokens_total: Annotated[int | None, typer.Option(
        min=1, help="Override the token budget (all model tokens, in and out).")] = None,
    max_cost: Annotated[float | None, typer.Option(
        help="Override the dollar budget of model use.")] = None,
    tools: Annotated[str | None, typer.Option(
        help="The tool set, comma-separated (submit is always there), e.g. bash,submit or "
        "bash,read_file,write_file,edit_file,score,notepad.")] = None,
    model: Annotated[str | None, typer.Option(help="Model (claude, openai).")] = None,
    max_tokens: Annotated[int | None, typer.Option(
        min=1, help="Output tokens per model reply (claude, openai).")] = None,
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
        "--agent-option", "-o", help="Any other agent option, KEY=VALUE (repeatable).")
    ] = None,
) -> None:
    """Run an agent on a task and record each episode under --out; repeat to resume."""
    from rdbench.runner import EpisodeSpec, run_many
    from rdbench.sandbox import SandboxUnavailable
    from rdbench.task import TaskSpecError, get_task
    from rdbench.tools import TOOL_SPECS

    options = _agent_options(
        {"model": model, "max_tokens": max_tokens, "thinking": thinking or thinking_budget,
         "base_url": base_url, "command": command},
        agent_option or [],
    )
    _check_agent(agent, options)
    try:
        spec = get_task(task)
    except TaskSpecError as error:
        raise _fail(str(error)) from error
    budget = {
        key: value
        for key, value in {"steps": max_steps, "time_s": max_time, "tokens": max_tokens_total,
                           "cost_usd": max_cost}.items()
        if value is not None
    }
    tool_set = [name.strip() for name in tools.split(",") if name.strip()] if tools else None
    unknown = [name for name in tool_set or [] if name not in TOOL_SPECS]
    if unknown:
        raise _fail(f"Unknown tools {unknown} in --tools; available: {', '.join(TOOL_SPECS)}")
    specs = [
        EpisodeSpec(task=spec, agent=agent, seed=seed + i, sandbox=sandbox, budget=budget,
                    agent_options=options, tools=tool_set)
        for i in range(episodes)
    ]
    try:
        results = run_many(specs, out, parallel=parallel)
    except SandboxUnavailable as error:
        raise _fail(str(error)) from error
    except KeyboardInterrupt:
        errors.print("interrupted: the running episodes' sandboxes were removed; run the same "
                     "command again to resume (finished episodes are kept)", soft_wrap=True)
        raise typer.Exit(code=130) from None
    console.print(_results_table(results))
    console.print(f"records: {out.resolve()}")


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
    from rdbench.task import get_task

    if split not in ("validation", "test"):
        raise _fail(f"--split must be validation or test, got {split!r}")
    spec = get_task(task)
    try:
        if workspace.is_dir():  # archived by the host's GNU tar, links never followed
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
) -> None:
    """Build the sandbox image if its inputs changed (the tag carries their hash)."""
    from rdbench.image import ImageBuildError, ensure_image
    from rdbench.sandbox import SandboxUnavailable
    from rdbench.sandbox.docker import connect
    from rdbench.sandbox.rootfs import export_for_bwrap

    try:
        tag = ensure_image(connect(), base=base, rebuild=rebuild)
        rootfs = export_for_bwrap(tag)  # so that bwrap works later without Docker
    except (ImageBuildError, SandboxUnavailable) as error:
        raise _fail(str(error)) from error
    console.print(f"sandbox image: {tag}")
    if rootfs is not None:
        console.print(f"bwrap root filesystem: {rootfs}")


@app.command()
def gc(
    everything: Annotated[bool, typer.Option("--all", help="Also remove containers of runs "
                                             "still going.")] = False,
) -> None:
    """Remove sandboxes left behind by runs that ended (crashed or were killed): Docker
    containers, and bubblewrap sandboxes' folders and cgroups."""
    from rdbench.sandbox import bwrap, docker
    from rdbench.sandbox.base import SandboxUnavailable

    try:
        removed = docker.remove_leftovers(everything=everything)
        console.print(f"removed {len(removed)} container(s) {' '.join(removed)}".rstrip())
    except SandboxUnavailable as error:
        console.print(f"docker: skipped ({error})")
    folders = bwrap.remove_leftovers(everything=everything)
    console.print(f"removed {len(folders)} bwrap sandbox(es) {' '.join(folders)}".rstrip())


@app.command()
def demo(
    task: Annotated[str, typer.Option(help="Task id.")] = DEFAULT_TASK,
    out: Annotated[Path, typer.Option(help="Folder for the records.")] = Path("runs/demo"),
) -> None:
    """Run the oracle and the null agent on the default task and print their scores."""
    from datetime import datetime

    from rdbench.runner import EpisodeSpec, run_episode
    from rdbench.task import get_task

    spec = get_task(task)
    out = out / datetime.now().strftime("%Y%m%d-%H%M%S")
    results = []
    for agent in ("oracle", "null"):
        console.print(f"running {agent} on {task} ...")
        results.append(run_episode(EpisodeSpec(task=spec, agent=agent), out))
    console.print(_results_table(results))
    for result in results:
        score = result["normalized_score"]
        shown = "not graded" if score is None else f"{score:.3f}"
        console.print(f"{result['agent']}: normalized score {shown}")
