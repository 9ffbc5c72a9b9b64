"""What Inspect loads through rdbench's `inspect_ai` entry point: importing the modules runs
their registrations (@sandboxenv)."""

from rdbench.integrations.inspect import sandbox  # noqa: F401  (registers rdbench-docker, -bwrap)
