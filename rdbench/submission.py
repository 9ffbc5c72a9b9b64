"""What a leaderboard submission is: a bundle's manifest, a verifier's findings, and the
verified.json a verification writes. Typed and versioned like the run records (records.py).

A bundle (`rdbench submit`) is a gzipped tar holding `manifest.json` and, per episode,
`episodes/<episode_id>/` with `result.json`, `transcript.jsonl`, `workspace.tar.gz` (when
the episode left one) and `handoff.md` (the notes a relay episode left its successor). A team
episode (result.json's `team`) adds `workers/<i>/` per worker i (0-based) with that worker's
`transcript.jsonl`, `workspace.tar.gz` and `handoff.md` when it left them. The manifest names
every other file of the bundle with its SHA-256.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MANIFEST = "manifest.json"
EPISODES = "episodes"
WORKERS = "workers"
"""A team episode's folder of worker sub-episodes (as rdbench.team writes it)."""
VERIFIED = "verified.json"
BUNDLE_SCHEMA: Literal[1] = 1
VERIFIED_SCHEMA: Literal[1] = 1


class Strict(BaseModel):
    """Strict on write (unknown fields are an error), immutable once made."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(Strict):
    """One file of the bundle: its path inside the bundle, size and SHA-256 (hex)."""

    path: str
    size: int
    sha256: str


class TaskEntry(Strict):
    """A task the run used, as it was when the run was made."""

    id: str
    version: str
    content_hash: str = Field(description="rdbench.identity's hash of the task folder")


class AgentEntry(Strict):
    """An agent of the run and its configuration."""

    name: str
    arm: str | None = Field(None, description="the arm's name, in a sweep")
    options: dict[str, Any]
    models: list[str] = Field(description="model ids the agent used (from its options)")
    scaffold: str | None = None


class Manifest(Strict):
    """What a bundle claims: who ran what, where, with which budgets and seeds."""

    schema_version: Literal[1] = BUNDLE_SCHEMA
    name: str
    agent_version: str | None = None
    notes: str = ""
    created_at: str
    rdbench_version: str
    agents: list[AgentEntry]
    tasks: list[TaskEntry]
    tools: list[str] | None = Field(description="the run's tool set; None: each task's default")
    budgets: dict[str, Any] = Field(description="the run's budget overrides")
    seeds: list[int]
    sandbox: str
    image_tag: str
    image_hash: str = Field(description="SHA-256 of the image's build inputs")
    episodes: list[str] = Field(description="episode ids, each a folder under episodes/")
    files: list[FileEntry]


Severity = Literal["reject", "warning"]


class Finding(Strict):
    """One thing a verifier found. `code` is stable (docs/leaderboard.md explains each);
    `severity` reject makes the bundle rejected, warning only marks it."""

    code: str
    severity: Severity
    message: str
    episode_id: str | None = None
    path: str | None = Field(default=None, description="the file or transcript line it is about")


Verdict = Literal["verified", "verified with warnings", "rejected"]


class RegradedEpisode(Strict):
    """One episode's claimed and re-graded scores."""

    episode_id: str
    task_id: str
    agent: str
    seed: int
    claimed_normalized: float | None
    regraded_normalized: float | None
    regraded_raw: float | None
    valid: bool
    tolerance: float = Field(description="largest allowed |claimed - regraded|, normalized")


class VerifiedReport(Strict):
    """What `rdbench verify` writes as verified.json."""

    schema_version: Literal[1] = VERIFIED_SCHEMA
    bundle: str = Field(description="the bundle's file name")
    bundle_sha256: str
    name: str
    verdict: Verdict
    findings: list[Finding]
    episodes: list[RegradedEpisode]
    verified_at: str
    verifier_rdbench_version: str
    verifier_image_tag: str
    verifier_image_hash: str


def verdict_of(findings: list[Finding]) -> Verdict:
    """The verdict the findings give: rejected if any rejects, else warnings, else verified."""
    if any(finding.severity == "reject" for finding in findings):
        return "rejected"
    return "verified with warnings" if findings else "verified"
