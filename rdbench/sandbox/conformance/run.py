"""Running the conformance suite against a backend by name."""

from __future__ import annotations

import time
from collections.abc import Iterable

import structlog

from rdbench.sandbox.base import SandboxUnavailable
from rdbench.sandbox.conformance import commands, files, identity, isolation, lifetime, limits
from rdbench.sandbox.conformance.checks import CHECKS, CheckResult, CheckSpec, Context

log = structlog.get_logger()

# The theme modules, imported above for the checks they register, in the order they run.
THEMES = (identity, commands, files, limits, isolation, lifetime)


def check_specs(only: Iterable[str] | None = None) -> list[CheckSpec]:
    """The shipped checks (or those named in `only`: full names, or themes such as
    "isolation"), in the order they run. ValueError naming the known checks for a name that
    is neither."""
    order = [theme.__name__.rsplit(".", 1)[-1] for theme in THEMES]
    specs = sorted(CHECKS.values(), key=lambda spec: order.index(spec.name.split(".")[0]))
    if only is None:
        return specs
    wanted = list(only)
    themes = {spec.name.split(".")[0] for spec in specs}
    unknown = [name for name in wanted if name not in CHECKS and name not in themes]
    if unknown:
        raise ValueError(
            f"Unknown conformance check(s) {', '.join(unknown)}; known themes: "
            f"{', '.join(sorted(themes))}; checks: {', '.join(CHECKS)}"
        )
    return [spec for spec in specs
            if spec.name in wanted or spec.name.split(".")[0] in wanted]  # fmt: skip


def check_names() -> list[str]:
    """The names of every shipped check (`theme.behaviour`), in the order they run."""
    return [spec.name for spec in check_specs()]


def run_checks(
    backend: str, *, image: str | None = None, only: Iterable[str] | None = None
) -> list[CheckResult]:
    """Check backend `backend` (a registered name) against every shipped behaviour (or those
    in `only`), starting its sandboxes from `image` (the backend's default when None) through
    `rdbench.sandbox.make_sandbox`. One result per check, in order; a check that raises fails
    with the error as its reason. Every sandbox started is closed before this returns.

    Raises SandboxUnavailable when the backend cannot start a sandbox at all (unknown, or
    not able to run here): there is nothing to check then.
    """
    specs = check_specs(only)
    context = Context(backend, image)
    results = []
    try:
        try:
            context.start_shared()
        except SandboxUnavailable as error:
            raise SandboxUnavailable(f"Cannot check backend {backend!r}: {error}") from error
        for spec in specs:
            started = time.monotonic()
            try:
                spec.run(context)
            except AssertionError as failure:
                result = CheckResult(spec.name, False, str(failure))
            except Exception as error:  # a check that crashes is a behaviour that fails
                result = CheckResult(spec.name, False, f"{type(error).__name__}: {error}")
            else:
                result = CheckResult(spec.name, True)
            seconds = round(time.monotonic() - started, 2)
            log.info("conformance.check", backend=backend, check=spec.name,
                     passed=result.passed, seconds=seconds)  # fmt: skip
            results.append(result)
    finally:
        context.close()
    return results
