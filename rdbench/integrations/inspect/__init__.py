"""rdbench inside UK AISI's Inspect (the `inspect` extra): its sandboxes as Inspect sandbox
environments (sandbox.py), its tasks as Inspect tasks `rdbench/<task-id>` (tasks.py), and
its episodes as Inspect eval logs (export.py, `rdbench export inspect`).

Inspect finds them through its own entry point group, `inspect_ai`, which names _registry.py;
nothing else in rdbench imports inspect_ai, so `import rdbench` works without the extra.
"""
