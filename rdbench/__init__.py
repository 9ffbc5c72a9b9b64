"""rdbench: a benchmark environment for automated AI R&D.

Importing the package registers every shipped task with Gymnasium as `rdbench/<task-id>-v0`.
Its logs go to the standard logging machinery (silent unless the program configures it; see
rdbench/logs.py); it prints nothing.
"""

__version__ = "0.1.0"

from rdbench.logs import use_standard_logging_unless_configured

use_standard_logging_unless_configured()

from rdbench.env import RDEnv, register_tasks  # noqa: E402  (after logging is set up)

__all__ = ["RDEnv", "__version__", "register_tasks"]

register_tasks()
