"""What Inspect loads through rdbench's `inspect_ai` entry point: importing the modules runs
their registrations (@sandboxenv, @task)."""

from rdbench.integrations.inspect import (
    sandbox,  # noqa: F401  (registers rdbench-docker, -bwrap)
    tasks,  # noqa: F401  (registers rdbench/<task-id>)
)
