"""The fixtures of tests/conftest.py for tests outside tests/: a task's own tests in
environments/<id>/tests/ (through environments/conftest.py) and those of a task elsewhere
(`rdbench task test` loads this module as a plugin: -p task_fixtures).

tests/conftest.py is loaded by path under its own module name, so that pytest's own import
of it (as `conftest`) and this one never meet; its fixtures, hooks and markers' checks are
re-exported from here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))  # helpers, fake_servers, loopback_guard

_spec = importlib.util.spec_from_file_location("rdbench_tests_conftest", TESTS / "conftest.py")
assert _spec is not None and _spec.loader is not None
_shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)
globals().update({name: value for name, value in vars(_shared).items()
                  if not name.startswith("__")})
