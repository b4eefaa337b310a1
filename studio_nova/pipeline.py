"""The pipeline's steps as plain functions over a workspace (output folder + store).

Prefect flows (`flows/`) call these one shot at a time; `run_cut` chains them without Prefect
for studios on another orchestrator and for tests. Every step reads its inputs from the store and
files, records what it made, and is idempotent: a rerun continues where the last one stopped.
A step that fails marks only its shot `failed` with the reason; the other shots go on.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import shutil
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from studio_nova.config import Settings
from studio_nova.conform import RenderedShot, conform
from studio_nova.editing import EditContext, EditedKeyframe, EditResult, Keyframe, ShotSource
from studio_nova.errors import PluginError, ReviewError, StudioNovaError
from studio_nova.frames import to_float
from studio_nova.ingest import Shot, ingest
from studio_nova.keyframe_files import keyframe_filename, read_mask_png, read_png, write_mask_png, write_png
from studio_nova.media.decode import read_frames
from studio_nova.media.fingerprint import file_fingerprint, fingerprint_paths
from studio_nova.media.probe import probe
from studio_nova.naming import cut_slug_candidates, safe_name, shot_slug_candidates, version_label
from studio_nova.plan import plan_chunks, plan_keyframes
from studio_nova.plugins import load_editor, load_propagator
from studio_nova.render import EncodeSettings, ProgressFn, render_shot
from studio_nova.store import KeyframeFile, RenderRecord, ShotRecord, Store, TimelineRecord

log = logging.getLogger(__name__)

AUTO_REVIEWER = "auto-approve"


@dataclass
class Workspace:
    """An output folder and the store that records what was made in it."""

    out: Path
    settings: Settings
    store: Store
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}")

    @classmethod
    def open(cls, out: str | Path, settings: Settings | None = None) -> "Workspace":
        settings = settings or Settings()
        out = Path(out).resolve()
        out.mkdir(parents=True, exist_ok=True)
        return cls(out=out, settings=settings, store=Store.open(settings.store_url(out)))

    def close(self) -> None:
        self.store.close()

    def slug(self, shot: ShotRecord) -> str:
        """The shot's folder name, allocated once by the store and unique in it."""
        return shot.slug or f"{safe_name(shot.name)}_{shot.id}"

    def keyframe_dir(self, shot: ShotRecord, version: int) -> Path:
        return self.out / "keyframes" / self.slug(shot) / version_label(version)

    def generated_dir(self, shot: ShotRecord) -> Path:
        """Where plugins keep what they generate for a shot (e.g. a generated background plate),
        so keyframes, every render chunk and a rerun use the same one."""
        return self.out / ".work" / self.slug(shot) / "generated"

    def render_paths(self, shot: ShotRecord, version: int) -> tuple[Path, Path, Path]:
        slug, label = self.slug(shot), version_label(version)
        folder = self.out / "renders" / slug
        return (
            folder / f"{slug}_{label}.mov",
            folder / f"{slug}_{label}_proxy.mp4",
            self.out / ".work" / slug / label,
        )

    def conformed_path(self, timeline: TimelineRecord) -> Path:
        """Where a cut's conformed OTIO goes: one file per timeline, so cuts share a folder."""
        return self.out / "conformed" / f"{timeline.slug or f'cut_{timeline.id}'}.otio"


@dataclass
class IngestReport:
    timeline_id: int
    shot_ids: list[int]
    problems: list[dict[str, Any]]  # clips that could not become shots, as JSON-able outcomes


# --------------------------------------------------------------------------------------- ingest


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def shot_fingerprint(shot: Shot) -> str:
    """What the shot's keyframes depend on: its media file as it is now (size, mtime, first and
    last MiB), its range, its edit request and the files the request names (a plate, a matte).
    A change makes a new edit version: new keyframes, a new review, a new render."""
    payload = {
        "media": file_fingerprint(shot.media),
        "first": shot.first_frame,
        "last": shot.last_frame,
        "edit": shot.edit.fingerprint(),
        "files": fingerprint_paths(shot.edit.params),
    }
    return _digest(payload)[:32]


def ingest_cut(ws: Workspace, timeline: str | Path) -> IngestReport:
    """Read the cut and record its shots; raises TimelineError only when the cut itself is unusable."""
    cut = ingest(Path(timeline), ws.settings)
    path = Path(timeline).resolve()
    timeline_id = ws.store.upsert_timeline(str(path), cut.name, cut_slug_candidates(cut.name, path.stem))
    cut_slug = ws.store.timeline(timeline_id).slug
    shot_ids = []
    for shot in cut.shots:
        record = ws.store.upsert_shot(
            timeline_id,
            key=shot.key,
            name=shot.name,
            media=str(shot.media),
            first_frame=shot.first_frame,
            last_frame=shot.last_frame,
            rate=shot.info.rate,
            width=shot.info.width,
            height=shot.info.height,
            bit_depth=shot.info.bit_depth,
            edit=asdict(shot.edit),
            fingerprint=shot_fingerprint(shot),
            slugs=shot_slug_candidates(shot.name, shot.key, cut_slug),
        )
        shot_ids.append(record.id)
    problems = [
        {
            "name": p.name,
            "key": p.key,
            "status": "failed",
            "error": str(p.error),
            "render": None,
            "first_frame": None,
            "last_frame": None,
            "qc": {},
        }
        for p in cut.problems
    ]
    for p in cut.problems:
        log.error("clip %s (%s) skipped: %s", p.name, p.key, p.error)
    return IngestReport(timeline_id=timeline_id, shot_ids=shot_ids, problems=problems)


# ------------------------------------------------------------------------------- keyframes/review


def effective_edit(ws: Workspace, shot: ShotRecord) -> dict[str, Any]:
    """The cut's edit request, with the instruction / seed of the latest rejection applied."""
    edit = dict(shot.edit)
    for review in ws.store.reviews(shot.id):
        if review.decision == "rejected":
            if review.new_instruction:
                edit["instruction"] = review.new_instruction
            if review.new_seed is not None:
                edit["seed"] = review.new_seed
    return edit


def original_keyframes(media: Path, first: int, last: int, interval: int) -> list[Keyframe]:
    """Decode a shot's keyframes in one streaming pass over its range."""
    info = probe(media)
    wanted = set(plan_keyframes(first, last, interval=interval))
    out = []
    for offset, frame in enumerate(read_frames(info, first, last)):
        if first + offset in wanted:
            out.append(Keyframe(source_frame=first + offset, image=to_float(frame)))
    return out


def edit_keyframes(ws: Workspace, shot_id: int) -> ShotRecord:
    """Have the shot's editor make a new keyframe version and send it to review."""
    shot = ws.store.shot(shot_id)
    edit = effective_edit(ws, shot)
    editor = load_editor(edit["editor"])
    originals = original_keyframes(
        Path(shot.media), shot.first_frame, shot.last_frame, ws.settings.keyframe_interval
    )
    result = editor.edit(
        EditContext(
            shot=shot.name,
            keyframes=originals,
            instruction=edit.get("instruction", ""),
            params=edit.get("params") or {},
            seed=int(edit.get("seed") or 0),
            source=ShotSource(Path(shot.media), shot.first_frame, shot.last_frame, ws.generated_dir(shot)),
        )
    )
    _check_edit_result(result, originals, shot.name, edit["editor"])
    previous = ws.store.keyframes(shot.id)
    version = (max(k.version for k in previous) + 1) if previous else 1
    folder = ws.keyframe_dir(shot, version)
    files = []
    for original, edited in zip(originals, result.keyframes):
        name = keyframe_filename(original.source_frame)
        paths = (folder / "original" / name, folder / "edited" / name, folder / "mask" / name)
        write_png(paths[0], original.image, shot.bit_depth, overwrite=True)
        write_png(paths[1], edited.image, shot.bit_depth, overwrite=True)
        write_mask_png(paths[2], edited.mask, overwrite=True)
        files.append(KeyframeFile(original.source_frame, str(paths[0]), str(paths[1]), str(paths[2])))
    ws.store.add_keyframe_version(
        shot.id,
        editor=edit["editor"],
        seed=int(edit.get("seed") or 0),
        instruction=edit.get("instruction", ""),
        info=_jsonable(result.info),
        frames=files,
    )
    ws.store.set_status(shot.id, "keyframes_ready")
    ws.store.set_status(shot.id, "in_review")
    return ws.store.shot(shot.id)


def _check_edit_result(result: EditResult, originals: list[Keyframe], shot: str, editor: str) -> None:
    if not isinstance(result, EditResult) or len(result.keyframes) != len(originals):
        got = len(result.keyframes) if isinstance(result, EditResult) else type(result).__name__
        raise PluginError(f"editor {editor!r} returned {got} keyframes for {len(originals)}", shot=shot)
    for original, edited in zip(originals, result.keyframes):
        if edited.source_frame != original.source_frame:
            raise PluginError(
                f"editor {editor!r} returned frame {edited.source_frame} where {original.source_frame} was expected",
                shot=shot,
            )
        if edited.image.shape != original.image.shape or edited.mask.shape != original.image.shape[:2]:
            raise PluginError(
                f"editor {editor!r} returned image {edited.image.shape} / mask {edited.mask.shape} "
                f"for a keyframe of {original.image.shape}",
                shot=shot,
                frame=original.source_frame,
            )


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def resolve_shot(ws: Workspace, ref: str) -> ShotRecord:
    """A shot by clip name, cut key or folder name; `CUT:REF` looks in one cut only (a run
    folder may hold several cuts with the same clip names and keys). Ambiguity is an error that
    lists what to type instead."""
    found = ws.store.find_shots(ref)
    cut, sep, rest = ref.partition(":")
    if not found and sep:
        timelines = [t for t in ws.store.timelines() if cut.lower() in ((t.slug or "").lower(), t.name.lower())]
        found = [s for t in timelines for s in ws.store.find_shots(rest, timeline_id=t.id)] if rest else []
    if not found:
        raise ReviewError(f"no shot named {ref!r} in {ws.out}; `studio-nova review list` shows them")
    if len(found) > 1:
        cuts = {t.id: t.slug for t in ws.store.timelines()}
        choices = ", ".join(f"{cuts.get(s.timeline_id)}:{s.key} (folder {s.slug})" for s in found)
        raise ReviewError(f"{len(found)} shots match {ref!r}; give one of: {choices}")
    return found[0]


def review(
    ws: Workspace,
    ref: str,
    decision: str,
    *,
    reviewer: str | None = None,
    notes: str = "",
    new_instruction: str | None = None,
    new_seed: int | None = None,
) -> ShotRecord:
    """Approve or reject the keyframes a shot is waiting on."""
    shot = resolve_shot(ws, ref)
    if shot.status != "in_review":
        raise ReviewError(f"shot is {shot.status}, not waiting for review", shot=shot.name)
    ws.store.add_review(
        shot.id,
        decision=decision,
        reviewer=reviewer or ws.settings.reviewer or getpass.getuser(),
        notes=notes,
        new_instruction=new_instruction,
        new_seed=new_seed,
    )
    return ws.store.shot(shot.id)


def prepare_shot(ws: Workspace, shot_id: int, *, auto_approve: bool = False) -> ShotRecord:
    """Bring a shot up to review (editing or re-editing keyframes) and, if asked, approve it."""
    shot = ws.store.shot(shot_id)
    if shot.status == "failed":
        shot = _retry_failed(ws, shot)
    if shot.status in ("ingested", "rejected"):
        shot = edit_keyframes(ws, shot.id)
    elif shot.status == "keyframes_ready":
        ws.store.set_status(shot.id, "in_review")
        shot = ws.store.shot(shot.id)
    if shot.status == "in_review" and auto_approve:
        ws.store.add_review(shot.id, decision="approved", reviewer=AUTO_REVIEWER, notes="--auto-approve")
        shot = ws.store.shot(shot.id)
    return shot


def _retry_failed(ws: Workspace, shot: ShotRecord) -> ShotRecord:
    """Send a failed shot back to the last step it had finished."""
    latest = ws.store.keyframes(shot.id)
    approved = any(
        r.decision == "approved" and latest and r.keyframe_version == latest[0].version
        for r in ws.store.reviews(shot.id)
    )
    ws.store.set_status(shot.id, "approved" if approved else "ingested")
    return ws.store.shot(shot.id)


# ----------------------------------------------------------------------------------------- render


@dataclass
class _StoreLedger:
    store: Store
    chunk_ids: list[int]
    done: set[int]
    worker: str

    def is_done(self, index: int) -> bool:
        return index in self.done

    def start(self, index: int) -> None:
        self.store.claim_chunk(self.chunk_ids[index], self.worker)

    def complete(self, index: int, output: Path) -> None:
        self.store.complete_chunk(self.chunk_ids[index], str(output))
        self.done.add(index)

    def fail(self, index: int, error: str) -> None:
        self.store.fail_chunk(self.chunk_ids[index], error)


def approved_keyframes(ws: Workspace, shot: ShotRecord) -> dict[int, EditedKeyframe]:
    return {
        k.source_frame: EditedKeyframe(k.source_frame, read_png(Path(k.edited_path)), read_mask_png(Path(k.mask_path)))
        for k in ws.store.keyframes(shot.id)
    }


#: Bump when the render code changes what it writes for the same inputs, so that renders made
#: by the older code are no longer taken for current ones.
RENDER_FORMAT = 1
MASTER_CODEC = "prores_422_hq"
#: Shots `render` looks at: approved ones, interrupted renders, and rendered ones whose render may
#: no longer match what decides its pixels.
RENDERABLE = ("approved", "rendering", "rendered", "conformed")


@dataclass(frozen=True)
class RenderPlan:
    """Everything that decides a render's pixels, and its hash (the render's identity)."""

    backend: str
    chunks: list[tuple[int, int]]
    edit: dict[str, Any]
    encode: EncodeSettings
    inputs: dict[str, Any]
    identity: str


def render_plan(ws: Workspace, shot: ShotRecord, backend: str | None = None) -> RenderPlan:
    """The identity a render of the shot would have now: media fingerprint, source range, edit
    request (with a rejection's new instruction / seed) and the files it names, the approved
    keyframes' content, the backend and its settings, the chunk plan and the encoder settings.
    Two renders with the same identity have the same pixels; nothing else is compared."""
    backend = backend or ws.settings.backend
    chunks = plan_chunks(
        shot.first_frame, shot.last_frame, length=ws.settings.chunk_length, overlap=ws.settings.chunk_overlap
    )
    edit = effective_edit(ws, shot)
    encode = EncodeSettings(ws.settings.prores_qscale, ws.settings.proxy_crf)
    inputs = {
        "format": RENDER_FORMAT,
        "media": file_fingerprint(shot.media),
        "range": [shot.first_frame, shot.last_frame],
        "edit": fingerprint_paths(edit),
        "keyframes": _keyframes_digest(ws, shot),
        "backend": {"name": backend, "options": fingerprint_paths(_propagator_options(ws.settings, backend))},
        "chunks": [list(c) for c in chunks],
        "encode": {"codec": MASTER_CODEC, **asdict(encode)},
    }
    return RenderPlan(backend, [tuple(c) for c in chunks], edit, encode, inputs, _digest(inputs))


def _keyframes_digest(ws: Workspace, shot: ShotRecord) -> str:
    """The approved keyframes' content: the bytes of every edited image and mask, by frame."""
    digest = hashlib.sha256()
    for keyframe in ws.store.keyframes(shot.id):
        digest.update(f"{keyframe.source_frame}\n".encode())
        for path in (keyframe.edited_path, keyframe.mask_path):
            try:
                digest.update(Path(path).read_bytes() if path else b"-")
            except OSError as exc:
                raise ReviewError(
                    f"approved keyframe file cannot be read ({exc.strerror or exc}); re-edit the "
                    "shot's keyframes", shot=shot.name, frame=keyframe.source_frame, path=path,
                ) from exc
    return digest.hexdigest()


def _usable(render: RenderRecord | None) -> bool:
    return render is not None and bool(render.path) and Path(render.path).is_file()


def _is_current(ws: Workspace, shot: ShotRecord, plan: RenderPlan) -> bool:
    """Whether the shot is rendered and its render has the identity a render would have now."""
    current = ws.store.current_render(shot.id)
    return (
        shot.status in ("rendered", "conformed")
        and current is not None
        and current.identity == plan.identity
        and _usable(current)
    )


def needs_render(ws: Workspace, shot_id: int, backend: str | None = None) -> bool:
    """Whether `render` would do anything for the shot: approved, interrupted, or rendered with
    a render that no longer matches (so a rerun queues GPU work only for those)."""
    shot = ws.store.shot(shot_id)
    if shot.status in ("approved", "rendering"):
        return True
    if shot.status not in RENDERABLE:
        return False
    try:
        return not _is_current(ws, shot, render_plan(ws, shot, backend))
    except StudioNovaError:
        return True  # its inputs cannot be read now: the render step reports why, on the shot


def render(ws: Workspace, shot_id: int, *, backend: str | None = None, progress: ProgressFn | None = None) -> ShotRecord:
    """Bring an approved shot's render up to date with what decides its pixels.

    The shot's current render stands while its identity matches (nothing is rendered); a
    complete render with the same identity elsewhere in the store (the same shot in another cut)
    is linked, not rendered again; an interrupted render of the same identity resumes at its
    first unfinished chunk; anything else renders a new version."""
    shot = ws.store.shot(shot_id)
    if shot.status not in RENDERABLE:
        return shot
    plan = render_plan(ws, shot, backend)
    if _is_current(ws, shot, plan):
        return shot
    same = ws.store.find_render(plan.identity)
    if _usable(same):
        log.info("%s: render %s has the same identity; linked, nothing rendered", shot.name, same.path)
        return ws.store.link_render(shot.id, same.id)
    propagator = load_propagator(plan.backend, **_propagator_options(ws.settings, plan.backend))
    info = probe(Path(shot.media))
    record = ws.store.start_render(shot.id, codec=MASTER_CODEC, identity=plan.identity, inputs=plan.inputs)
    chunk_rows = ws.store.plan_chunks(record.id, plan.chunks)
    ledger = _StoreLedger(
        ws.store, [c.id for c in chunk_rows], {c.index for c in chunk_rows if c.status == "done"}, ws.worker
    )
    master, proxy, work = ws.render_paths(shot, record.version)
    try:
        result = render_shot(
            shot=shot.name,
            info=info,
            first_frame=shot.first_frame,
            last_frame=shot.last_frame,
            chunks=plan.chunks,
            keyframes=approved_keyframes(ws, shot),
            propagator=propagator,
            work_dir=work,
            master_path=master,
            proxy_path=proxy,
            ledger=ledger,
            encode=plan.encode,
            progress=progress,
            instruction=str(plan.edit.get("instruction") or ""),
            guide=_background_guide(ws, shot, plan.edit, info),
            identity=plan.identity,
        )
    except StudioNovaError as exc:
        ws.store.fail_render(record.id, str(exc))
        raise
    qc = dict(result.qc, backend=plan.backend, version=record.version)
    ws.store.finish_render(record.id, path=str(result.master), proxy_path=str(result.proxy), qc=qc)
    shutil.rmtree(work, ignore_errors=True)  # our own intermediates; the master holds every frame
    return ws.store.shot(shot.id)


def _background_guide(ws: Workspace, shot: ShotRecord, edit: dict[str, Any], info: Any) -> Any:
    """For a background replacement, the per-chunk composite guide; None for other edits."""
    if edit.get("kind", "edit") != "background":
        return None
    from studio_nova.background_replace import BackgroundReplacement, BackgroundRequest

    replacement = BackgroundReplacement(
        BackgroundRequest.from_params(edit.get("params") or {}),
        shot=shot.name, media=info, first_frame=shot.first_frame, last_frame=shot.last_frame,
        seed=int(edit.get("seed") or 0), instruction=str(edit.get("instruction") or ""),
        cache_dir=ws.generated_dir(shot),
    )
    return lambda start, frames: replacement.fuse(frames, start).guide()


def _propagator_options(settings: Settings, backend: str) -> dict[str, Any]:
    """Options of the first-party propagators from the workspace's settings (not the environment's)."""
    if backend == "flow":
        return {"preset": settings.flow_preset}
    if backend == "nova":
        return {
            "base": settings.nova_base,
            "adapter": settings.nova_adapter,
            "steps": settings.nova_steps,
            "text_scale": settings.nova_text_scale,
            "keyframe_scale": settings.nova_keyframe_scale,
            "device": settings.device,
            "offload": settings.model_offload,
            "window": settings.nova_window,
            "seed": settings.nova_seed,
        }
    return {}


# ---------------------------------------------------------------------------------------- conform


def linked_render(ws: Workspace, shot: ShotRecord) -> RenderRecord | None:
    """The render the shot's clip is conformed to, while it stands (rendered or conformed)."""
    if shot.status not in ("rendered", "conformed"):
        return None
    return ws.store.current_render(shot.id)


def conform_timeline(
    ws: Workspace, timeline_id: int, timeline: str | Path | None = None, formats: Sequence[str] = ()
) -> dict[str, Path]:
    """Write the cut's own OUT/conformed/<cut>.otio (and the asked-for formats) with every
    rendered shot relinked; clips whose request changed since their render keep their media."""
    record = ws.store.timeline(timeline_id)
    renders = {}
    shots = ws.store.shots(timeline_id=timeline_id)
    for shot in shots:
        latest = linked_render(ws, shot)
        if latest is not None and latest.path:
            renders[shot.key] = RenderedShot(
                key=shot.key,
                path=Path(latest.path),
                version=latest.version,
                first_frame=shot.first_frame,
                last_frame=shot.last_frame,
                rate=shot.rate,
                qc=latest.qc,
                proxy=Path(latest.proxy_path) if latest.proxy_path else None,
            )
    written = conform(Path(timeline or record.path), renders, ws.conformed_path(record), formats=formats)
    for shot in shots:
        if shot.key in renders and shot.status == "rendered":
            ws.store.set_status(shot.id, "conformed")
    return written


# ------------------------------------------------------------------------------------- reporting


def shot_outcome(ws: Workspace, shot_id: int) -> dict[str, Any]:
    """The `--json` shape of one shot (see the README's CLI contract)."""
    shot = ws.store.shot(shot_id)
    latest = linked_render(ws, shot)
    outcome: dict[str, Any] = {
        "name": shot.name,
        "key": shot.key,
        "status": shot.status,
        "render": latest.path if latest else None,
        "proxy": latest.proxy_path if latest else None,
        "version": version_label(latest.version) if latest else None,
        "first_frame": shot.first_frame,
        "last_frame": shot.last_frame,
        "qc": dict(latest.qc) if latest else {},
    }
    if shot.status == "failed":
        outcome["error"] = shot.error
    return outcome


def guarded(ws: Workspace, shot_id: int, step: Callable[[], Any]) -> None:
    """Run one shot's step; on failure mark only that shot failed, with the reason."""
    try:
        step()
    except StudioNovaError as exc:
        log.error("%s", exc)
        ws.store.set_status(shot_id, "failed", error=str(exc))
    except Exception as exc:  # a bug or a broken plugin must not take the other shots down
        log.exception("shot %s failed", shot_id)
        ws.store.set_status(shot_id, "failed", error=f"internal error: {type(exc).__name__}: {exc}")


@dataclass
class RunReport:
    conformed: str | None
    shots: list[dict[str, Any]]
    formats: dict[str, str] = field(default_factory=dict)

    @property
    def nothing_ran(self) -> bool:
        return bool(self.shots) and all(s["status"] == "failed" for s in self.shots)

    def to_dict(self) -> dict[str, Any]:
        return {"conformed": self.conformed, "formats": self.formats, "shots": self.shots}


def finish_run(
    ws: Workspace, report: IngestReport, timeline: str | Path, formats: Sequence[str]
) -> RunReport:
    """Conform what is rendered and report every shot (including clips that never became shots)."""
    conformed: str | None = None
    written: dict[str, str] = {}
    try:
        paths = conform_timeline(ws, report.timeline_id, timeline, formats)
        conformed = str(paths.pop("otio"))
        written = {k: str(v) for k, v in paths.items()}
    except StudioNovaError as exc:
        log.error("conform failed: %s", exc)
        written = {"error": str(exc)}
    shots = [shot_outcome(ws, i) for i in report.shot_ids] + report.problems
    return RunReport(conformed=conformed, shots=shots, formats=written)


def run_cut(
    ws: Workspace,
    timeline: str | Path,
    *,
    backend: str | None = None,
    auto_approve: bool = False,
    formats: Sequence[str] = (),
) -> RunReport:
    """ingest → keyframes → review → render → conform, without an orchestrator."""
    report = ingest_cut(ws, timeline)
    for shot_id in report.shot_ids:
        guarded(ws, shot_id, lambda: prepare_shot(ws, shot_id, auto_approve=auto_approve))
        guarded(ws, shot_id, lambda: render(ws, shot_id, backend=backend))
    return finish_run(ws, report, timeline, formats)


# ------------------------------------------------------------------- nightly render and reports


def renderable_shots(ws: Workspace, timeline_id: int | None = None) -> list[int]:
    """Approved shots not rendered yet, and renders interrupted half-way: the nightly's work list."""
    return [
        s.id for s in ws.store.shots(timeline_id=timeline_id) if s.status in ("approved", "rendering")
    ]


def qc_rows(ws: Workspace, timeline_id: int | None = None) -> list[dict[str, Any]]:
    """One row per rendered shot with its latest render's QC figures, for the morning table."""
    rows = []
    for shot in ws.store.shots(timeline_id=timeline_id):
        latest = linked_render(ws, shot)
        if latest is None:
            continue
        qc = latest.qc or {}
        rows.append(
            {
                "shot": shot.name,
                "key": shot.key,
                "version": version_label(latest.version),
                "frames": qc.get("frames"),
                "chunks": qc.get("chunks"),
                "edited_coverage": qc.get("edited_coverage"),
                "untouched_exact": qc.get("untouched_exact"),
                "seam_psnr_db": qc.get("seam_psnr_db"),
                "render_fps": qc.get("render_fps"),
                "backend": qc.get("backend"),
                "render": latest.path,
            }
        )
    return rows


def before_after_still(ws: Workspace, shot_id: int) -> tuple[int, Any, Any] | None:
    """The middle frame of a rendered shot: (source frame, source image, rendered image)."""
    shot = ws.store.shot(shot_id)
    latest = linked_render(ws, shot)
    if latest is None or not latest.path:
        return None
    middle = (shot.first_frame + shot.last_frame) // 2
    [before] = list(read_frames(probe(Path(shot.media)), middle, middle))
    offset = middle - shot.first_frame
    [after] = list(read_frames(probe(Path(latest.path)), offset, offset))
    return middle, to_float(before), to_float(after)
