"""The sandbox conformance suite: the behaviours every backend must show, runnable against any
registered backend by name (`rdbench sandbox check BACKEND`, or `run_checks(BACKEND)`).

Checks are small functions grouped by theme (identity, commands, files, limits, isolation,
lifetime), each with a docstring naming the behaviour; they start sandboxes only through
`rdbench.sandbox.make_sandbox`, so a third party's backend is held to the same walls.
"""

from __future__ import annotations

from rdbench.sandbox.conformance.checks import CheckResult, CheckSpec
from rdbench.sandbox.conformance.run import check_names, check_specs, run_checks

__all__ = ["CheckResult", "CheckSpec", "check_names", "check_specs", "run_checks"]
