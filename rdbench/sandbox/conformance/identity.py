"""Checks of who commands run as: the unprivileged agent by default, root on request, and who
may switch to whom (only root in a grading sandbox, to run the agent's code as the agent)."""

from __future__ import annotations

from rdbench.sandbox.base import AGENT_UID
from rdbench.sandbox.conformance.checks import Context, check, expect, said

SWITCH_TO_AGENT = (
    "import subprocess\n"
    f"print(subprocess.run(['id', '-u'], user={AGENT_UID}, group={AGENT_UID}, extra_groups=[],\n"
    "                     capture_output=True, text=True, check=True).stdout.strip())\n"
)


@check("identity")
def the_sandbox_names_its_backend(ctx: Context) -> None:
    """A sandbox says which backend made it (its `backend` is the name it was started by)."""
    named = getattr(ctx.sandbox, "backend", None)
    expect(named == ctx.backend, f"sandbox.backend is {named!r}, expected {ctx.backend!r}")


@check("identity")
def every_sandbox_has_its_own_id(ctx: Context) -> None:
    """A sandbox has an `id` (a non-empty string), its own: two sandboxes never share one."""
    ids = [getattr(ctx.sandbox, "id", None), getattr(ctx.grading, "id", None)]
    expect(all(isinstance(i, str) and i for i in ids), f"the sandboxes' ids are {ids}")
    expect(ids[0] != ids[1], f"two sandboxes have the same id {ids[0]!r}")


@check("identity")
def commands_run_as_the_agent_in_its_home(ctx: Context) -> None:
    """Commands run as the unprivileged user `agent` (uid 61000) in /home/agent, with HOME and
    USER set for it."""
    box = ctx.sandbox
    seen = {
        "user": box.exec(["id", "-un"]).stdout.strip(),
        "uid": box.exec(["id", "-u"]).stdout.strip(),
        "working folder": box.exec(["pwd"]).stdout.strip(),
        "HOME and USER": box.exec(["sh", "-c", "echo $HOME $USER"]).stdout.strip(),
    }
    wanted = {"user": "agent", "uid": str(AGENT_UID), "working folder": "/home/agent",
              "HOME and USER": "/home/agent agent"}  # fmt: skip
    wrong = [f"{key} is {seen[key]!r} (expected {wanted[key]!r})"
             for key in wanted if seen[key] != wanted[key]]  # fmt: skip
    expect(not wrong, "; ".join(wrong))


@check("identity")
def root_on_request(ctx: Context) -> None:
    """A command asked to run as root (user="root") runs as uid 0."""
    uid = ctx.sandbox.exec(["id", "-u"], user="root").stdout.strip()
    expect(uid == "0", f"user='root' ran as uid {uid!r}")


@check("identity")
def the_agent_cannot_become_root(ctx: Context) -> None:
    """The agent cannot make itself root (setuid(0) fails)."""
    result = ctx.sandbox.exec(["python3", "-c", "import os; os.setuid(0); print('root')"])
    expect(not result.ok, "the agent's setuid(0) worked: it can become root")


@check("identity")
def root_cannot_switch_users_in_an_agent_sandbox(ctx: Context) -> None:
    """In an agent sandbox even root cannot switch to another user."""
    result = ctx.sandbox.exec(["python3", "-c", SWITCH_TO_AGENT], user="root")
    expect(not result.ok, f"root switched to uid {result.stdout.strip()} in an agent sandbox")


@check("identity")
def root_may_run_code_as_the_agent_in_a_grading_sandbox(ctx: Context) -> None:
    """In a grading sandbox root may run code as the agent (how the grader runs the agent's
    code); commands still run as the agent by default."""
    result = ctx.grading.exec(["python3", "-c", SWITCH_TO_AGENT], user="root")
    expect(result.ok and result.stdout.strip() == str(AGENT_UID),
           f"root could not run code as uid {AGENT_UID}: {said(result)}")  # fmt: skip
    uid = ctx.grading.exec(["id", "-u"]).stdout.strip()
    expect(uid == str(AGENT_UID), f"a grading sandbox runs commands as uid {uid!r} by default, "
           f"not the agent's {AGENT_UID}")  # fmt: skip
