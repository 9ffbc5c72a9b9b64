"""Checks of how commands run: input, working folder, environment, exit code, output decoding,
the image's Python, and arguments no program can receive."""

from __future__ import annotations

from rdbench.sandbox.base import SandboxInputError
from rdbench.sandbox.conformance.checks import CheckFailed, Context, check, expect, python, said


@check("commands")
def stdin_cwd_env_and_exit_code(ctx: Context) -> None:
    """A command gets its standard input, working folder and environment, and its exit code
    comes back."""
    result = ctx.sandbox.exec(["sh", "-c", 'cat; echo "$FOO"; pwd; exit 3'],
                              input=b"hello\n", cwd="/tmp", env={"FOO": "bar"})  # fmt: skip
    expect(result.stdout == "hello\nbar\n/tmp\n", f"expected 'hello\\nbar\\n/tmp\\n', got "
           f"{result.stdout!r}")  # fmt: skip
    expect(result.returncode == 3 and not result.ok, f"expected exit code 3, got {said(result)}")


@check("commands")
def the_image_python_and_packages_are_there(ctx: Context) -> None:
    """Commands run in the sandbox image: its Python (/opt/rdbench-venv) with numpy and
    scikit-learn."""
    prefix = python(ctx.sandbox, "import sys, numpy, sklearn; print(sys.prefix)")
    expect(prefix == "/opt/rdbench-venv", f"python3 is {prefix!r}, not the image's "
           "/opt/rdbench-venv")  # fmt: skip


@check("commands")
def non_utf8_output_is_decoded_with_replacement(ctx: Context) -> None:
    """Binary and non-UTF-8 output is decoded with replacement characters, never an error."""
    result = ctx.sandbox.exec(["sh", "-c", r"printf 'ok\377\376\000end'; printf '\377' >&2"])
    expect(result.stdout == "ok\ufffd\ufffd\x00end", f"stdout came back as {result.stdout!r}")
    expect(result.stderr == "\ufffd", f"stderr came back as {result.stderr!r}")


@check("commands")
def a_nul_byte_in_a_command_or_path_is_a_typed_error(ctx: Context) -> None:
    """A NUL byte in a command, its environment or a path is a SandboxInputError, and the
    sandbox goes on."""
    attempts = {
        "a command": lambda: ctx.sandbox.exec(["cat", "a\0b"]),
        "an environment variable": lambda: ctx.sandbox.exec(["true"], env={"X": "a\0b"}),
        "a path read": lambda: ctx.sandbox.read_file("a\0b"),
    }
    for what, attempt in attempts.items():
        try:
            attempt()
        except SandboxInputError:
            continue
        except Exception as error:
            raise CheckFailed(
                f"a NUL byte in {what} raised {type(error).__name__} ({error}), not "
                "SandboxInputError"
            ) from error
        expect(False, f"a NUL byte in {what} raised nothing (expected SandboxInputError)")
    expect(ctx.sandbox.exec(["true"]).ok, "the sandbox stopped working after a NUL byte")
