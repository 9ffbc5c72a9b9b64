"""Scaffolds: the chat loop's policy for context and memory, apart from how the model is
called (the provider). Any scaffold runs with any provider.

The scaffolds rdbench ships live as readable, self-contained files in the top-level `agents/`
folder (plain, notepad, summary, successor, team); each is one small `Scaffold` subclass a
researcher can copy and edit into the next. `load_scaffold` finds one by name (a file of
that folder) or by path (`path/to/mine.py`, or `path/to/mine.py:ClassName`), with settings
written as `--scaffold summary(at=0.7)` (rdbench.calls).

The chat loop (rdbench.agents.chat) calls a scaffold's hooks in this order:
`start` once; then for each request `request` (the turns the model sees) and, for each call
of the scaffold's own tools (`tools`), `answer`; when the server says the prompt is too long,
`overflowed`; at the end of the episode `end`, which may return notes for a successor.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import sys
from pathlib import Path
from typing import Any, ClassVar, Protocol

from rdbench.agents.base import AgentConfigError, TaskInfo
from rdbench.agents.conversation import ToolRequest, Turn
from rdbench.calls import CallSpec, CallSpecError, parse_call
from rdbench.resources import resource_path

DEFAULT_SCAFFOLD = "plain"
TRIM_AT = 0.8  # share of the window at which trimming starts, unless the agent says
TRIM_TARGET = 0.5  # after a trim, the prompt should fill about this share of the window
TRIM_AFTER_OVERFLOW = 0.4  # the same, after the server said the prompt was too long
CHARS_PER_TOKEN = 3.5  # a first guess, until the context says what the last request had
TRIM_NOTICE = ("[Some earlier messages were removed to fit the context window. The task's "
               "instructions are above; the most recent messages follow.]")


class ScaffoldContext(Protocol):
    """What the chat loop shows a scaffold of the episode in progress."""

    info: TaskInfo  # the task, instructions, tools, budget, seed; handoff and team seat
    briefing: str  # the first observation
    history: list[Turn]  # the conversation so far; a scaffold may rewrite it (a summary)
    context_limit: int  # the model's context window, in tokens
    last_prompt_tokens: int  # the last request's prompt, as the provider counted it

    def ask(self, instruction: str, turns: list[Turn] | None = None) -> str:
        """An extra request without tools: `turns` (default: the history) and then
        `instruction` as a user turn; the model's text. Recorded and charged like any
        request (a summary, notes for a successor)."""
        ...

    def note(self, action: str, text: str = "", **details: Any) -> None:
        """Record a `scaffold` event in the transcript (a notepad write, a summary, a post)."""
        ...


class Scaffold:
    """The plain tool loop; subclasses change what the model sees or remembers.

    Settings are keyword arguments declared in `defaults` (name -> default value); a value
    given must have its default's type. `workers` above 1 makes the runner play a team
    episode (one sandbox per worker); `relay` chains a run's episodes of the same task and
    agent, each starting with the notes its predecessor left (`end`).
    """

    name: ClassVar[str] = DEFAULT_SCAFFOLD
    defaults: ClassVar[dict[str, Any]] = {}
    relay: ClassVar[bool] = False

    def __init__(self, **settings: Any):
        unknown = sorted(set(settings) - set(self.defaults))
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise AgentConfigError(
                f"Scaffold {self.name!r} has no setting {', '.join(unknown)}; its settings: "
                f"{valid}")
        for key, value in settings.items():
            default = self.defaults[key]
            if not _same_kind(value, default):
                raise AgentConfigError(
                    f"Scaffold {self.name!r}: {key} must be {type(default).__name__} like its "
                    f"default {default!r}, got {value!r}")
        self.settings: dict[str, Any] = {**self.defaults, **settings}

    @property
    def workers(self) -> int:
        """How many workers (sandboxes) an episode of this scaffold has: 1 but for a team."""
        return 1

    @property
    def spec(self) -> str:
        """The scaffold as `name(key=value, ...)` with every setting (defaults included)."""
        return CallSpec(self.name, dict(self.settings)).canonical

    def tools(self) -> list[dict[str, Any]]:
        """Definitions (name, description, input_schema) of the tools this scaffold answers
        itself, offered besides the env's."""
        return []

    def start(self, context: ScaffoldContext) -> None:
        """A new episode begins (its briefing is the history's first turn)."""

    def request(self, context: ScaffoldContext) -> list[Turn]:
        """The turns the model sees in the next request."""
        return context.history

    def answer(self, call: ToolRequest, context: ScaffoldContext) -> str:
        """The answer to a call of one of this scaffold's own tools."""
        raise AgentConfigError(f"Scaffold {self.name!r} has no tool {call.tool!r}")

    def overflowed(self, context: ScaffoldContext) -> bool:
        """The server said the last prompt was too long: shrink the history and return
        True, or False when nothing can go (the episode then ends with an agent error)."""
        return False

    def end(self, context: ScaffoldContext, reason: str) -> str | None:
        """The episode ended (`reason`: submitted, a budget ran out, ...): notes for the
        next episode of a relay, or None."""
        return None

    # --- helpers for subclasses ---------------------------------------------------------

    def near_limit(self, context: ScaffoldContext, share: float | None = None) -> bool:
        """True when the last prompt filled `share` of the context window (default: the
        agent's `trim_at`, 0.8)."""
        if share is None:
            share = getattr(context, "trim_at", TRIM_AT)
        return context.last_prompt_tokens >= share * context.context_limit

    def drop_oldest(
        self, context: ScaffoldContext, share: float = TRIM_TARGET, *,
        overflowed: bool = False, notice: str = TRIM_NOTICE,
    ) -> int:
        """Drop the oldest exchanges (an assistant turn and the user turns after it) so
        that the history fills about `share` of the window; the first turn becomes the
        briefing and `notice`. After an overflow (the estimate was wrong) at least half
        go. The newest exchange always stays, so every kept call keeps its answer.
        Recorded as a `trim` event; returns how many turns went (0: none could)."""
        groups = exchanges(context.history)
        budget = share * context.context_limit * getattr(context, "chars_per_token",
                                                         CHARS_PER_TOKEN)
        sizes = [sum(map(turn_size, group)) for group in groups]
        total = len(context.briefing) + sum(sizes)
        drop = min(len(groups) // 2, len(groups) - 1) if overflowed and groups else 0
        total -= sum(sizes[:drop])
        while drop < len(groups) - 1 and total > budget:
            total -= sizes[drop]
            drop += 1
        if drop == 0:
            return 0
        dropped = sum(map(len, groups[:drop]))
        kept = [turn for group in groups[drop:] for turn in group]
        context.history = [Turn.user(f"{context.briefing}\n\n{notice}"), *kept]
        context.note("trim", notice, turns_dropped=dropped, turns_kept=len(kept),
                     overflowed=overflowed)
        return dropped


def exchanges(history: list[Turn]) -> list[list[Turn]]:
    """The history after its opening user turn(s), cut into exchanges: each an assistant
    turn and the user turns (answers to its calls, nudges) that follow it."""
    starts = [index for index, turn in enumerate(history) if turn.role == "assistant"]
    bounds = [*starts, len(history)]
    return [history[start:end] for start, end in itertools.pairwise(bounds)]


def turn_size(turn: Turn) -> int:
    """A turn's size in characters (text, thinking, calls and answers): what trimming
    weighs against the context window."""
    size = len(turn.text) + len(turn.thinking or "")
    size += sum(len(call.tool) + len(str(call.input)) for call in turn.calls)
    return size + sum(len(answer.text) for answer in turn.answers)


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def scaffolds_dir() -> Path:
    """The folder of the shipped scaffolds (agents/ in a checkout)."""
    return resource_path("agents")


def scaffold_names() -> list[str]:
    """The shipped scaffolds, by name."""
    return sorted(path.stem for path in scaffolds_dir().glob("*.py") if path.stem[0] != "_")


def load_scaffold(spec: str | None) -> Scaffold:
    """The scaffold `spec` names, with its settings: a shipped name (`summary(at=0.7)`) or a
    file (`mine.py`, `mine.py:ClassName`); None is plain. AgentConfigError says what is
    wrong and what can be named."""
    try:
        call = parse_call(spec or DEFAULT_SCAFFOLD, "--scaffold")
    except CallSpecError as error:
        raise AgentConfigError(str(error)) from error
    scaffold_class = scaffold_class_for(call.name)
    try:
        return scaffold_class(**call.settings)
    except TypeError as error:
        raise AgentConfigError(f"Scaffold {call.name!r} cannot be made: {error}") from error


def scaffold_class_for(name: str) -> type[Scaffold]:
    """The Scaffold subclass named `name`: a shipped file's stem, or `path.py[:Class]`."""
    path_text, _, class_name = name.partition(":") if name.count(":") == 1 else (name, "", "")
    if path_text.endswith(".py") or "/" in path_text:
        path = Path(path_text).expanduser()
        if not path.is_file():
            raise AgentConfigError(f"Scaffold file {path} does not exist")
    else:
        path = scaffolds_dir() / f"{name}.py"
        if not path.is_file():
            raise AgentConfigError(
                f"Unknown scaffold {name!r}; shipped: {', '.join(scaffold_names())}; or give "
                "a file: --scaffold path/to/mine.py")
    return _class_in(_load_module(path), class_name, path)


def _load_module(path: Path) -> Any:
    module_name = f"rdbench_scaffold_{path.stem}_{abs(hash(str(path.resolve()))):x}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise AgentConfigError(f"Scaffold file {path} cannot be imported")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise AgentConfigError(f"Scaffold file {path} failed to import: {error}") from error
    return module


def _class_in(module: Any, class_name: str, path: Path) -> type[Scaffold]:
    if class_name:
        found = getattr(module, class_name, None)
        if not (inspect.isclass(found) and issubclass(found, Scaffold)):
            raise AgentConfigError(f"{path} has no Scaffold subclass {class_name!r}")
        return found
    own = [value for value in vars(module).values()
           if inspect.isclass(value) and issubclass(value, Scaffold)
           and value.__module__ == module.__name__]
    if len(own) != 1:
        names = ", ".join(value.__name__ for value in own) or "none"
        raise AgentConfigError(
            f"{path} defines {len(own)} Scaffold subclasses ({names}); name one as "
            f"{path}:ClassName")
    return own[0]
