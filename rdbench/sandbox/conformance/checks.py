"""The conformance suite's machinery: a check, its result, the registry the theme modules fill,
and the context a check runs in (the sandboxes it may use, started only through
`rdbench.sandbox.make_sandbox`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog

from rdbench.sandbox.base import Sandbox, SandboxConfig

log = structlog.get_logger()

# What every sandbox of a check run is made with (a check may change a field of it).
CONFIG = SandboxConfig(
    cpus=1.0, memory_mb=512, pids=128, exec_timeout_s=30, output_limit=64_000,
)  # fmt: skip


@dataclass(frozen=True)
class CheckResult:
    """One behaviour of one backend, checked: its name, whether it held, and why not."""

    name: str
    passed: bool
    detail: str = ""  # the reason on failure; a note (or nothing) on success


class CheckFailed(AssertionError):
    """A behaviour does not hold; the message says what the sandbox did instead."""


def expect(condition: object, reason: str) -> None:
    """Fail the running check with `reason` unless `condition` holds."""
    if not condition:
        raise CheckFailed(reason)


Check = Callable[["Context"], None]


@dataclass(frozen=True)
class CheckSpec:
    """A registered check: its name (`theme.function`), the behaviour it pins down (the first
    paragraph of its docstring) and the function."""

    name: str
    behaviour: str
    run: Check


CHECKS: dict[str, CheckSpec] = {}


def check(theme: str) -> Callable[[Check], Check]:
    """Register the decorated function as the check `theme.<function name>`; its docstring's
    first paragraph names the behaviour."""

    def register(function: Check) -> Check:
        name = f"{theme}.{function.__name__}"
        doc = (function.__doc__ or "").strip()
        if not doc:
            raise ValueError(f"Check {name} needs a docstring naming the behaviour it checks")
        CHECKS[name] = CheckSpec(name, " ".join(doc.split("\n\n")[0].split()), function)
        return function

    return register


class Context:
    """What a check runs against: backend `backend` with `image`. `sandbox` (an agent sandbox)
    and `grading` (a grading sandbox) are started once when first used and shared by the
    checks; `start()` makes a fresh one. `close()` removes every sandbox it started."""

    def __init__(self, backend: str, image: str | None = None):
        self.backend = backend
        self.image = image
        self.run_id = f"conformance-{uuid.uuid4().hex[:8]}"
        self._shared: dict[bool, Sandbox | BaseException] = {}
        self._started: list[Sandbox] = []

    def config(self, **changes: Any) -> SandboxConfig:
        """The checks' sandbox configuration for this backend, with `changes`."""
        base = replace(CONFIG, image=self.image, labels={"rdbench.run": self.run_id})
        return replace(base, **changes)

    def start(self, **changes: Any) -> Sandbox:
        """A fresh sandbox made with `config(**changes)`, closed by `close()` if the check
        does not close it."""
        from rdbench.sandbox import make_sandbox

        box = make_sandbox(self.backend, self.config(**changes))
        self._started.append(box)
        return box

    def start_shared(self) -> None:
        """Start the shared agent sandbox now, raising what starting it raised."""
        if False not in self._shared:
            self._shared[False] = self.start()

    def _shared_sandbox(self, grading: bool) -> Sandbox:
        if grading not in self._shared:
            try:
                self._shared[grading] = self.start(grading=grading)
            except Exception as error:  # every check that needs it fails with this reason
                self._shared[grading] = error
        shared = self._shared[grading]
        if isinstance(shared, BaseException):
            kind = "grading" if grading else "agent"
            raise CheckFailed(f"no {kind} sandbox could be started: {shared}") from shared
        return shared

    @property
    def sandbox(self) -> Sandbox:
        """The shared agent sandbox."""
        return self._shared_sandbox(grading=False)

    @property
    def grading(self) -> Sandbox:
        """The shared grading sandbox (SandboxConfig(grading=True))."""
        return self._shared_sandbox(grading=True)

    def close(self) -> None:
        """Close every sandbox this context started."""
        for box in self._started:
            try:
                box.close()
            except Exception as error:  # close the others whatever one of them does
                log.warning("conformance.close_failed", backend=self.backend, error=str(error))
        self._started.clear()


def python(sandbox: Sandbox, code: str, **options: Any) -> str:
    """The stripped stdout of `python3 -c code` in `sandbox`; CheckFailed if it fails."""
    result = sandbox.exec(["python3", "-c", code], **options)
    expect(result.ok, f"python3 -c {code[:60]!r}... failed: {said(result)}")
    return result.stdout.strip()


def said(result: Any) -> str:
    """What a failed command said, for a reason: its exit code and the end of its output."""
    output = (result.stderr or result.stdout).strip()[-300:]
    timed_out = ", timed out" if result.timed_out else ""
    return f"exit code {result.returncode}{timed_out}: {output!r}"
