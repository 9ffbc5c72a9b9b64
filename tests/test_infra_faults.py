"""Infrastructure faults are not the agent's: a sandbox that fails to start and a final grading
whose machinery failed are retried with backoff; what keeps failing is recorded as an
infrastructure error, never as a score, and runs again next time."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import TOY_TASK

from rdbench import infrastructure
from rdbench.infrastructure import InfrastructureFailure, retry_infrastructure
from rdbench.records import load_result
from rdbench.runner import EpisodeSpec, finished_result, run_episode
from rdbench.sandbox.base import SANDBOXES, Sandbox, SandboxConfig, SandboxUnavailable
from rdbench.task import load_task
from rdbench.transcript import read_transcript

_names = itertools.count()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(infrastructure, "BACKOFF_S", 0.01)


class Faults:
    """A docker backend registered under its own name whose first `start` agent sandboxes
    and first `grading` grading sandboxes fail: refused at start, or (`kill_grading`)
    removed right after they start, as a lost container would be."""

    def __init__(self, start: int = 0, grading: int = 0, kill_grading: bool = False):
        self.start, self.grading, self.kill_grading = start, grading, kill_grading
        self.starts = self.gradings = 0
        self.name = f"test-faults-{next(_names)}"
        SANDBOXES[self.name] = self

    def __call__(self, config: SandboxConfig) -> Sandbox:
        from rdbench.sandbox.docker import DockerSandbox

        if config.grading:
            self.gradings += 1
            if self.gradings <= self.grading and not self.kill_grading:
                raise SandboxUnavailable("the engine refused the grading container (test)")
        else:
            self.starts += 1
            if self.starts <= self.start:
                raise SandboxUnavailable("the engine refused the container (test)")
        sandbox = DockerSandbox(config)
        if config.grading and self.gradings <= self.grading:
            sandbox.close()  # the container is gone before the grader ran
        return sandbox


@pytest.fixture
def faults() -> Iterator[list[Faults]]:
    made: list[Faults] = []
    yield made
    for backend in made:
        SANDBOXES.pop(backend.name, None)


def episode(faults: list[Faults], agent: str = "oracle", **how: int | bool) -> tuple[
        EpisodeSpec, Faults]:  # fmt: skip
    backend = Faults(**how)  # type: ignore[arg-type]
    faults.append(backend)
    return EpisodeSpec(task=load_task(TOY_TASK), agent=agent, sandbox=backend.name), backend


def infrastructure_errors(folder: Path) -> list[str]:
    return [event["message"] for event in read_transcript(folder)
            if event["type"] == "error" and event.get("infrastructure")]


@pytest.mark.docker
def test_sandbox_that_fails_to_start_twice_is_retried_and_the_episode_completes(
    tmp_path: Path, sandbox_image: str, faults: list[Faults]
) -> None:
    spec, backend = episode(faults, start=2)
    result = run_episode(spec, tmp_path)
    assert backend.starts == 3
    assert result.outcome == "submitted" and result.normalized_score == pytest.approx(1.0)
    assert result.infrastructure_retries == 2 and result.infrastructure_error is None
    assert load_result(tmp_path / spec.episode_id) == result
    errors = infrastructure_errors(tmp_path / spec.episode_id)
    assert len(errors) == 2 and all("refused the container" in e for e in errors)


@pytest.mark.docker
def test_sandbox_that_never_starts_is_an_infrastructure_error_never_a_score(
    tmp_path: Path, sandbox_image: str, faults: list[Faults]
) -> None:
    spec, backend = episode(faults, start=1000)
    result = run_episode(spec, tmp_path)
    assert backend.starts == infrastructure.ATTEMPTS
    assert result.outcome == "infrastructure_error" and not result.scored
    assert result.raw_score is None and result.normalized_score is None and not result.valid
    assert "refused the container" in (result.infrastructure_error or "")
    assert result.infrastructure_retries == infrastructure.ATTEMPTS - 1 and result.steps == 0
    folder = tmp_path / spec.episode_id
    assert load_result(folder) == result
    assert finished_result(folder) is None  # not finished: the next run tries again
    backend.start = 0
    again = run_episode(spec, tmp_path)
    assert again.outcome == "submitted" and again.normalized_score == pytest.approx(1.0)


@pytest.mark.docker
def test_final_grading_whose_sandbox_died_is_graded_again(
    tmp_path: Path, sandbox_image: str, faults: list[Faults]
) -> None:
    spec, backend = episode(faults, grading=2, kill_grading=True)
    result = run_episode(spec, tmp_path)
    assert backend.gradings == 3  # the env's grading, two more on the saved workspace
    assert result.outcome == "submitted" and result.valid
    assert result.normalized_score == pytest.approx(1.0) and result.raw_score == 5.0
    assert result.infrastructure_error is None and result.infrastructure_retries == 2
    events = read_transcript(tmp_path / spec.episode_id)
    grades = [event for event in events if event["type"] == "grade"]
    assert len(grades) == 1 and grades[0]["normalized_score"] == pytest.approx(1.0)
    assert len(infrastructure_errors(tmp_path / spec.episode_id)) >= 2


@pytest.mark.docker
def test_final_grading_that_keeps_failing_is_an_infrastructure_error(
    tmp_path: Path, sandbox_image: str, faults: list[Faults]
) -> None:
    spec, backend = episode(faults, grading=1000)
    result = run_episode(spec, tmp_path)
    assert backend.gradings == infrastructure.ATTEMPTS
    assert result.outcome == "infrastructure_error" and not result.valid
    assert result.raw_score is None and result.normalized_score is None
    assert "refused the grading container" in (result.infrastructure_error or "")
    assert result.terminated  # the agent did submit: the grading is what failed
    assert (tmp_path / spec.episode_id / "workspace.tar.gz").is_file()
    assert finished_result(tmp_path / spec.episode_id) is None


@pytest.mark.docker
def test_agent_that_crashes_is_an_agent_error_and_still_graded(
    tmp_path: Path, sandbox_image: str
) -> None:
    spec = EpisodeSpec(task=load_task(TOY_TASK), agent="agents_for_tests:Scripted",
                       agent_options={"crash_after": 1}, sandbox="docker")
    result = run_episode(spec, tmp_path)
    assert result.outcome == "agent_error" and "the agent's own bug" in (result.agent_error or "")
    assert result.raw_score == 3.0 and result.infrastructure_error is None
    assert finished_result(tmp_path / spec.episode_id) == result


def test_only_infrastructure_errors_are_retried() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("a bug, not a fault")

    with pytest.raises(ValueError, match="a bug"):
        retry_infrastructure(broken, what="work", wait=lambda s: None)
    assert len(calls) == 1

    waits: list[float] = []

    def down() -> None:
        raise OSError("engine connection lost")

    with pytest.raises(InfrastructureFailure, match="failed after 3 attempts") as failed:
        retry_infrastructure(down, what="work", wait=waits.append, attempts=3)
    assert failed.value.retries == 2 and waits == [0.01, 0.02]  # exponential backoff


def test_engine_and_host_errors_are_infrastructure_agent_bugs_are_not() -> None:
    import docker.errors

    from rdbench.grading import GradingError
    from rdbench.infrastructure import is_infrastructure_error

    assert is_infrastructure_error(docker.errors.APIError("500 Server Error"))
    assert is_infrastructure_error(ConnectionResetError("engine connection lost"))
    assert is_infrastructure_error(GradingError("The grader crashed (exit 1)"))
    assert is_infrastructure_error(SandboxUnavailable("no engine"))
    assert not is_infrastructure_error(RuntimeError("the agent's own bug"))
    assert not is_infrastructure_error(KeyError("tools"))
