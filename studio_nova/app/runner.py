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
from studio_nova.errors import PluginError, StudioNovaError, TimelineError
from studio_nova.plugin_api.registry import available, load_plugin
from studio_nova.store import ShotRecord

if TYPE_CHECKING:
    from studio_nova.render.shot import StopFlag
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


#: Folders of a run folder that steps write into; each one that exists must be a writable folder.
RUN_SUBFOLDERS = ("renders", "keyframes", "conformed", ".work")


def check_timeline(timeline: Path) -> Path:
    """The cut file, before anything is created for it: it exists, is a file, and can be read;
    a TimelineError naming it and saying what to do otherwise."""
    timeline = Path(timeline)
    where = f" (relative to {Path.cwd()})" if not timeline.is_absolute() else ""
    if not timeline.exists():
        raise TimelineError(f"timeline file not found{where}; check the path and give the cut file "
                            "(.otio .edl .xml .fcpxml .aaf)", path=timeline)
    if timeline.is_dir():
        raise TimelineError("this is a folder, not a timeline file; give the cut file inside it "
                            "(.otio .edl .xml .fcpxml .aaf)", path=timeline)
    if not timeline.is_file():
        raise TimelineError("this is not a regular file; give the cut file (.otio .edl .xml .fcpxml .aaf)",
                            path=timeline)
    try:
        with open(timeline, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise TimelineError(f"the timeline file cannot be read ({exc.strerror or exc}); make it readable "
                            "(chmod u+r) or give a copy that is", path=timeline) from None
    return timeline


def prepare_output(out: Path, option: str = "--out") -> Path:
    """The run folder, created if needed, with it and every step folder already in it proven
    writable; an OutputError naming the folder and saying what to do otherwise. Nothing else is
    created (the store is made when the workspace opens)."""
    from studio_nova.workflow.render import prepare_folder

    fix = f"give {option} a folder you can write to (a new one, or an earlier run's folder)"
    prepare_folder(out, what=f"the output folder ({option})", fix=fix)
    for name in RUN_SUBFOLDERS:
        sub = Path(out) / name
        if sub.exists() or sub.is_symlink():
            prepare_folder(sub, what=f"the {name} folder of {option}",
                           fix=f"make it a writable folder, or give {option} another folder")
    return Path(out)


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
    stop: StopFlag | None = None,
) -> dict[str, Any]:
    """Run a cut through the pipeline with an orchestrator (default Prefect) or in-process.

    Against an orchestrator's server and without `auto_approve`, the run stops at review: each
    waiting shot gets a review gate, and approved shots render on the GPU pool. `progress` hears
    an in-process run's shots and chunks; an orchestrator shows progress its own way (Prefect: a
    progress artifact per render). `stop` ends an in-process run at the next chunk boundary (the
    report then carries `"interrupted": true`); an orchestrator does not read it.

    The timeline is checked (`check_timeline`, then `workflow.ingest.check_timeline`: it reads as
    a cut and some clip asks for an edit, no media opened) and the output folder made and checked
    (`prepare_output`) before anything else: a bad one creates nothing.
    """
    from studio_nova.workflow.ingest import check_timeline as check_cut

    check_timeline(timeline)
    check_cut(timeline, settings)
    prepare_output(out)
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
            ws, timeline, backend=backend, auto_approve=auto_approve, formats=formats, progress=progress, stop=stop
        ).to_dict()
    finally:
        ws.close()


def stored_report(timeline: Path, out: Path, settings: Settings) -> dict[str, Any]:
    """The `run --json` shape of a cut as the store has it now (no conform): what an orchestrated
    run that was stopped half-way leaves. No shots when the cut was never ingested there."""
    from studio_nova import workflow

    ws = workflow.Workspace.open(out, settings)
    try:
        path = str(Path(timeline).resolve())
        ids = [t.id for t in ws.store.timelines() if t.path == path]
        shots = [workflow.shot_outcome(ws, s.id) for i in ids for s in ws.store.shots(timeline_id=i)]
        return {"conformed": None, "formats": {}, "shots": shots, "interrupted": True}
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
