"""rdbench: a benchmark environment for automated AI R&D.

Importing the package registers every shipped task with Gymnasium as `rdbench/<task-id>-v0`.
"""

__version__ = "0.1.0"

from rdbench.env import RDEnv, register_tasks

__all__ = ["RDEnv", "__version__", "register_tasks"]

register_tasks()
