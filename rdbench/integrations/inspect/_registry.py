"""What Inspect loads through the `inspect_ai` entry point: rdbench's sandboxes and tasks."""

from rdbench.integrations.inspect import tasks  # noqa: F401 (registers rdbench/<task-id>)
