"""The runner: a cut through the pipeline in-process, or through an orchestrator plugin.

The library's steps (`studio_nova.workflow`) know no orchestrator. An orchestrator is a plugin in
the entry-point group `studio_nova.orchestrators`; the project's Prefect flows register `prefect`
there (`studio_nova_flows.orchestrator`), so the application never imports the flows and a
studio on another scheduler registers its own. `none` runs the steps in this process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from studio_nova.config import Settings
from studio_nova.errors import PluginError, StudioNovaError
from studio_nova.plugin_api.registry import available, load_plugin
from studio_nova.store import ShotRecord

if TYPE_CHECKING:
    from studio_nova.workflow.run import RunObserver

ORCHESTRATORS = "studio_nova.orchestrators"
IN_PROCESS = "none"
DEFAULT_ORCHESTRATOR = "prefect"


@dataclass(frozen=True)
class GateAnswer:
    """What the orchestrator did with a review decision already recorded in the store."""

    action: str  # "resumed" | "waiting" | "render-requested" | "review-requested"
    run_id: str | None = None


@dataclass(frozen=True)
class Registration:
    """The deployments an orchestrator registered, its work pools, and where its UI is."""

    deployments: list[str]
    pools: list[str] = field(default_factory=list)


class Orchestrator(Protocol):
    """A scheduler the runner can hand a cut to. Methods must not block on a person."""

    def connect(self, settings: Settings) -> str | None:
        """The orchestrator's API address, or None when there is no server to talk to (a run
        then happens in an ephemeral instance and reviews go through the CLI only)."""

    def run_cut(
        self, timeline: Path, out: Path, *, settings: Settings, backend: str | None,
        auto_approve: bool, formats: Sequence[str], gate: bool,
    ) -> dict[str, Any]:
        """Run a cut; the result has the `run --json` shape (`conformed`, `formats`, `shots`,
        and `gates`: shot id → run id of its review gate, when `gate`)."""

    def answer_review(self, store_url: str, out: Path, shot: ShotRecord, answer: Any) -> GateAnswer:
        """Resolve the shot's review gate the way its form would, after the decision was recorded."""

    def register(self, settings: Settings, *, nightly_out: str | None, nightly_cron: str) -> Registration:
        """Register the deployments (the nightly render paused unless `nightly_out`)."""

    def run_url(self, run_id: str) -> str:
        """Where a person opens run `run_id` in the orchestrator's UI."""


def orchestrator_names() -> list[str]:
    return [IN_PROCESS] + [p.name for p in available(ORCHESTRATORS)]


def load_orchestrator(name: str) -> Orchestrator:
    if name == IN_PROCESS:
        raise PluginError(f"{IN_PROCESS!r} runs in this process; it has no scheduler to talk to")
    return load_plugin(ORCHESTRATORS, name)


def run_timeline(
    timeline: Path,
    out: Path,
    *,
    settings: Settings,
    backend: str | None = None,
    auto_approve: bool = False,
    formats: Sequence[str] = (),
    orchestrator: str = DEFAULT_ORCHESTRATOR,
    progress: RunObserver | None = None,
) -> dict[str, Any]:
    """Run a cut through the pipeline with an orchestrator (default Prefect) or in-process.

    Against an orchestrator's server and without `auto_approve`, the run stops at review: each
    waiting shot gets a review gate, and approved shots render on the GPU pool. `progress` hears
    an in-process run's shots and chunks; an orchestrator shows progress its own way (Prefect: a
    progress artifact per render).
    """
    out.mkdir(parents=True, exist_ok=True)
    if orchestrator != IN_PROCESS:
        runner = load_orchestrator(orchestrator)
        gate = not auto_approve and runner.connect(settings) is not None
        return runner.run_cut(
            timeline, out, settings=settings, backend=backend, auto_approve=auto_approve,
            formats=list(formats), gate=gate,
        )
    from studio_nova import workflow

    ws = workflow.Workspace.open(out, settings)
    try:
        return workflow.run_cut(
            ws, timeline, backend=backend, auto_approve=auto_approve, formats=formats, progress=progress
        ).to_dict()
    finally:
        ws.close()


def connected(settings: Settings, orchestrator: str = DEFAULT_ORCHESTRATOR) -> Orchestrator | None:
    """The orchestrator if its server is reachable, else None (decisions then wait in the store)."""
    try:
        runner = load_orchestrator(orchestrator)
    except PluginError:
        return None
    return runner if runner.connect(settings) is not None else None


def require_server(settings: Settings, orchestrator: str = DEFAULT_ORCHESTRATOR) -> tuple[Orchestrator, str]:
    runner = load_orchestrator(orchestrator)
    url = runner.connect(settings)
    if url is None:
        raise StudioNovaError("no Prefect server: start one with `studio-nova server`, or set PREFECT_API_URL")
    return runner, url
