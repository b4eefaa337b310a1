"""The `studio-nova` command line.

Every command prints a short human summary, or with `--json` one JSON document on stdout (logs go
to stderr). Exit status: 0 when something could run (per-shot failures are reported in the
output), 1 when nothing could run, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

from studio_nova.config import Settings, load_settings
from studio_nova.errors import StudioNovaError

log = logging.getLogger("studio_nova")

CONFORM_FORMATS = ("fcp_xml", "cmx_3600", "fcpx_xml")


def _emit(args: argparse.Namespace, payload: dict[str, Any], human: str) -> None:
    if args.json:
        json.dump(payload, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(human)


def _rate_number(rate: Fraction) -> float | int:
    return int(rate) if rate.denominator == 1 else round(float(rate), 6)


# ------------------------------------------------------------------------------------------- plan


def cmd_plan(args: argparse.Namespace) -> int:
    from studio_nova.ingest import ingest
    from studio_nova.plan import plan_shot

    settings = load_settings()
    cut = ingest(Path(args.timeline), settings)
    shots = []
    for shot in cut.shots:
        plan = plan_shot(
            shot.first_frame,
            shot.last_frame,
            length=settings.chunk_length,
            overlap=settings.chunk_overlap,
            interval=settings.keyframe_interval,
        )
        shots.append(
            {
                "name": shot.name,
                "key": shot.key,
                "media": str(shot.media),
                "rate": _rate_number(shot.info.rate),
                "rate_fraction": f"{shot.info.rate.numerator}/{shot.info.rate.denominator}",
                "width": shot.info.width,
                "height": shot.info.height,
                "bit_depth": shot.info.bit_depth,
                "first_frame": plan.first_frame,
                "last_frame": plan.last_frame,
                "chunks": [list(c) for c in plan.chunks],
                "keyframes": plan.keyframes,
                "edit": {
                    "instruction": shot.edit.instruction,
                    "editor": shot.edit.editor,
                    "params": shot.edit.params,
                    "seed": shot.edit.seed,
                },
            }
        )
    problems = [{"name": p.name, "key": p.key, "error": str(p.error)} for p in cut.problems]
    lines = [
        f"{s['name']:<24} {s['key']:<10} frames {s['first_frame']}-{s['last_frame']} "
        f"@ {s['rate']} fps {s['width']}x{s['height']}  {len(s['chunks'])} chunks, "
        f"{len(s['keyframes'])} keyframes  [{s['edit']['editor']}]"
        for s in shots
    ] + [f"{p['name']:<24} {p['key']:<10} SKIPPED: {p['error']}" for p in problems]
    _emit(args, {"shots": shots, "problems": problems}, "\n".join(lines))
    return 0 if shots else 1


# -------------------------------------------------------------------------------------------- run


def _prepare_prefect(out: Path) -> None:
    """Ephemeral Prefect keeps its database inside --out so a run writes nothing elsewhere."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not os.environ.get("PREFECT_API_URL") and not os.environ.get("PREFECT_HOME"):
        os.environ["PREFECT_HOME"] = str(out / ".prefect")


def prefect_server(settings: Settings) -> str | None:
    """The Prefect API to use for review gates: PREFECT_API_URL, else a `studio-nova server` on
    this machine's port; None means no server (ephemeral Prefect, reviews through the CLI only).
    Must run before Prefect is imported, so that Prefect reads the URL it sets."""
    from studio_nova.review_gate import prefect_port
    from studio_nova.server import find_local_api

    url = os.environ.get("PREFECT_API_URL") or find_local_api(prefect_port(settings))
    if url:
        os.environ["PREFECT_API_URL"] = url
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return url


def _ensure_deployments() -> None:
    from studio_nova_flows import deployments

    # Only what is missing: re-registering the nightly here would pause it (no --nightly-out).
    present = deployments.registered()
    missing = [s for s in deployments.DEPLOYMENTS if s.full_name not in present]
    if missing:
        deployments.register(specs=missing, nightly_cron=load_settings().nightly_cron)


def run_timeline(
    timeline: Path,
    out: Path,
    *,
    backend: str | None,
    auto_approve: bool,
    formats: Sequence[str],
    orchestrator: str,
) -> dict[str, Any]:
    """Run a cut through the pipeline with Prefect (default) or in-process.

    Against a Prefect server (not ephemeral) and without --auto-approve, the run stops at review:
    each waiting shot gets a review-gate run in the UI, and approved shots render on the GPU pool.
    """
    out.mkdir(parents=True, exist_ok=True)
    if orchestrator == "prefect":
        gate = not auto_approve and prefect_server(load_settings()) is not None
        _prepare_prefect(out.resolve())
        if gate:
            _ensure_deployments()
        from studio_nova_flows.run import run_flow

        return run_flow(
            timeline=str(timeline), out=str(out), backend=backend, auto_approve=auto_approve,
            formats=list(formats), gate=gate,
        )
    from studio_nova import pipeline

    ws = pipeline.Workspace.open(out, load_settings())
    try:
        return pipeline.run_cut(ws, timeline, backend=backend, auto_approve=auto_approve, formats=formats).to_dict()
    finally:
        ws.close()


def _shots_table(shots: list[dict[str, Any]]) -> str:
    lines = []
    for s in shots:
        detail = s.get("error") or s.get("render") or ""
        lines.append(f"{s['name']:<24} {s['status']:<12} {detail}")
    return "\n".join(lines)


def _ui_run_url(flow_run_id: str) -> str:
    api = os.environ.get("PREFECT_API_URL", "")
    return f"{api.rsplit('/api', 1)[0]}/runs/flow-run/{flow_run_id}"


def cmd_run(args: argparse.Namespace) -> int:
    result = run_timeline(
        Path(args.timeline),
        Path(args.out),
        backend=args.backend,
        auto_approve=args.auto_approve,
        formats=args.format or [],
        orchestrator=args.orchestrator,
    )
    waiting = [s["name"] for s in result["shots"] if s["status"] == "in_review"]
    human = _shots_table(result["shots"]) + f"\nconformed cut: {result['conformed']}"
    gates = result.get("gates")
    if waiting and gates is not None:
        human += "\nwaiting for review in the Prefect UI (or `studio-nova review approve|reject SHOT "
        human += f"--out {args.out}`):"
        for shot in result["shots"]:
            if shot["status"] == "in_review":
                run_id = gates.get(str(_shot_id(args.out, shot["key"])))
                human += f"\n  {shot['name']}: {_ui_run_url(run_id) if run_id else '(gate not opened)'}"
    elif waiting:
        human += f"\nwaiting for review: {', '.join(waiting)} (studio-nova review approve SHOT --out {args.out})"
    _emit(args, result, human)
    nothing_ran = bool(result["shots"]) and all(s["status"] == "failed" for s in result["shots"])
    return 1 if nothing_ran else 0


def _shot_id(out: str, key: str) -> int | None:
    from studio_nova import pipeline

    ws = pipeline.Workspace.open(out, load_settings())
    try:
        found = [s for s in ws.store.find_shots(key) if s.key == key]
        return found[0].id if found else None
    finally:
        ws.close()


# ----------------------------------------------------------------------------------------- review


def _open_workspace(args: argparse.Namespace):
    from studio_nova import pipeline

    settings = load_settings()
    if args.out is None and not settings.database_url:
        raise StudioNovaError("say which run to review: --out DIR (or set STUDIO_NOVA_DATABASE_URL)")
    out = Path(args.out) if args.out else Path.cwd()
    if args.out is not None and not (out / "studio-nova.db").exists() and not settings.database_url:
        raise StudioNovaError(f"no studio-nova run in {out} (no studio-nova.db there)", path=out)
    return pipeline.Workspace.open(out, settings)


def cmd_review(args: argparse.Namespace) -> int:
    from studio_nova import review_gate

    ws = _open_workspace(args)
    try:
        hours = review_gate.review_timeout_hours(ws.settings)
        if args.review_cmd == "list":
            shots = ws.store.shots(status=None if args.all else "in_review")
            rows = []
            for shot in shots:
                keyframes = ws.store.keyframes(shot.id)
                state = review_gate.review_state(ws.store, shot, hours)
                rows.append(
                    {
                        "name": shot.name,
                        "key": shot.key,
                        "shot": shot.slug,  # unique in the run folder: what to type when names repeat
                        "status": shot.status,
                        "keyframe_version": keyframes[0].version if keyframes else None,
                        "keyframes": [k.edited_path for k in keyframes],
                        "reviews": [
                            {"decision": r.decision, "reviewer": r.reviewer, "notes": r.notes, "time": r.created_at.isoformat()}
                            for r in ws.store.reviews(shot.id)
                        ],
                        "review_expires_at": state.expires_at.isoformat() if state.expires_at else None,
                        "review_expired": state.expired,
                    }
                )
            human = "\n".join(
                f"{r['name']:<24} {r['key']:<10} {r['status']:<12} keyframes v{r['keyframe_version'] or 0:03d}"
                + ("  REVIEW EXPIRED (answer here to go on)" if r["review_expired"] else "")
                for r in rows
            ) or "nothing waiting for review"
            _emit(args, {"shots": rows}, human)
            return 0
        return _decide(args, ws)
    finally:
        ws.close()


def _decide(args: argparse.Namespace, ws: Any) -> int:
    """Record the decision, then resolve the shot's review gate in Prefect the way the form does."""
    from studio_nova import pipeline, review_gate
    from studio_nova.errors import ReviewError

    target = pipeline.resolve_shot(ws, args.shot)
    answer = review_gate.Answer(
        decision=args.review_cmd,
        reviewer=args.reviewer or review_gate.default_reviewer(ws.settings),
        notes=args.notes or "",
        new_instruction=getattr(args, "instruction", None) or "",
        new_seed=getattr(args, "seed", None),
    )
    problem = review_gate.check_answer(answer)
    if problem:
        raise ReviewError(problem, shot=target.name)
    decision = "approved" if args.review_cmd == "approve" else "rejected"
    shot = pipeline.review(
        ws,
        args.shot,
        decision,
        reviewer=answer.reviewer,
        notes=answer.notes,
        new_instruction=answer.new_instruction or None,
        new_seed=answer.new_seed,
    )
    payload: dict[str, Any] = {"name": shot.name, "key": shot.key, "status": shot.status}
    if prefect_server(ws.settings):
        from studio_nova_flows.deployments import answer_gate

        outcome = answer_gate(ws.store.url, str(ws.out), shot.id, shot.status, answer)
        payload["gate"] = {"action": outcome.action, "flow_run_id": str(outcome.flow_run_id) if outcome.flow_run_id else None}
        follow = {
            "resumed": "its review run goes on in Prefect",
            "waiting": "its review run reads the decision when it starts",
            "render-requested": "its render is queued on the GPU pool",
            "review-requested": "its keyframes are re-edited in a new review run",
        }[outcome.action]
    else:
        follow = "it renders on the next `studio-nova run`" if decision == "approved" else (
            "its keyframes are re-edited on the next `studio-nova run`"
        )
    _emit(args, payload, f"{shot.name}: {shot.status}; {follow}")
    return 0


# ----------------------------------------------------------------------------------- server/deploy


def _stop_on_sigterm(_signum: int, _frame: Any) -> None:
    """A service manager's stop is handled like Ctrl-C: the server and workers end cleanly."""
    raise KeyboardInterrupt


def _nightly_cron(args: argparse.Namespace, settings: Settings) -> str:
    """--nightly-cron if given (checked like the setting), else STUDIO_NOVA_NIGHTLY_CRON."""
    if args.nightly_cron is None:
        return settings.nightly_cron
    from studio_nova.config import validate_cron
    from studio_nova.errors import ConfigError

    try:
        return validate_cron(args.nightly_cron)
    except ValueError as exc:
        raise ConfigError(f"--nightly-cron: {exc}") from None


def cmd_server(args: argparse.Namespace) -> int:
    import signal
    import time

    from studio_nova.review_gate import prefect_port
    from studio_nova.server import LocalServer

    settings = load_settings()
    nightly_cron = _nightly_cron(args, settings)
    port = args.port or prefect_port(settings)
    server = LocalServer(
        port=port,
        host=args.host,
        home=Path(args.home).resolve() if args.home else None,
        log_dir=Path(args.logs).resolve() if args.logs else None,
        workers=() if args.no_workers else LocalServer.workers,
    )
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        server.start_server()
        os.environ["PREFECT_API_URL"] = server.api_url
        os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        from studio_nova_flows import deployments

        names = deployments.register(
            nightly_out=str(Path(args.nightly_out).resolve()) if args.nightly_out else None,
            nightly_cron=nightly_cron,
        )
        server.start_workers()
        payload = {"ui": server.ui_url, "api": server.api_url, "deployments": names,
                   "pools": [p.name for p in deployments.POOLS],
                   "nightly": {"cron": nightly_cron, "timezone": "UTC", "active": bool(args.nightly_out)}}
        nightly = (f"nightly render of {args.nightly_out}: cron {nightly_cron!r} (UTC)" if args.nightly_out
                   else "the nightly render is paused: start with --nightly-out DIR (the run folder to render)")
        _emit(args, payload, f"Prefect UI: {server.ui_url}  (API {server.api_url}; Ctrl-C stops everything)\n"
              f"deployments: {', '.join(names)}\n{nightly}")
        sys.stdout.flush()
        while True:
            dead = server.dead_children()
            if dead:
                raise StudioNovaError(f"{', '.join(dead)} stopped unexpectedly; see the logs in {server.log_dir or 'PREFECT_HOME/logs'}")
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopping the Prefect server and workers", file=sys.stderr)
        return 0
    finally:
        server.stop()


def cmd_deploy(args: argparse.Namespace) -> int:
    settings = load_settings()
    nightly_cron = _nightly_cron(args, settings)
    url = prefect_server(settings)
    if url is None:
        raise StudioNovaError("no Prefect server: start one with `studio-nova server`, or set PREFECT_API_URL")
    from studio_nova_flows import deployments

    names = deployments.register(
        nightly_out=str(Path(args.nightly_out).resolve()) if args.nightly_out else None,
        nightly_cron=nightly_cron,
    )
    human = "registered: " + ", ".join(names) + f"\nnightly render: cron {nightly_cron!r} (UTC)"
    if not args.nightly_out:
        human += "\nthe nightly render is paused until you deploy with --nightly-out DIR (the run folder to render)"
    _emit(args, {"api": url, "deployments": names,
                 "nightly": {"cron": nightly_cron, "timezone": "UTC", "active": bool(args.nightly_out)}}, human)
    return 0


# -------------------------------------------------------------------------------------- keyframes


def cmd_keyframes_export(args: argparse.Namespace) -> int:
    from studio_nova.ingest import ingest
    from studio_nova.keyframe_files import keyframe_filename, write_png
    from studio_nova.naming import shot_slug_candidates, unique_names
    from studio_nova.pipeline import original_keyframes

    settings = load_settings()
    cut = ingest(Path(args.timeline), settings)
    slugs = unique_names(shot_slug_candidates(s.name, s.key) for s in cut.shots)
    out = Path(args.out)
    shots = []
    for shot, slug in zip(cut.shots, slugs):
        folder = out / slug
        entry: dict[str, Any] = {"name": shot.name, "key": shot.key, "dir": str(folder), "keyframes": []}
        try:
            for kf in original_keyframes(shot.media, shot.first_frame, shot.last_frame, settings.keyframe_interval):
                write_png(folder / keyframe_filename(kf.source_frame), kf.image, shot.info.bit_depth)
                entry["keyframes"].append(kf.source_frame)
        except StudioNovaError as exc:
            entry["error"] = str(exc)
        shots.append(entry)
    problems = [{"name": p.name, "key": p.key, "error": str(p.error)} for p in cut.problems]
    human = "\n".join(
        f"{s['name']:<24} {len(s['keyframes'])} keyframes → {s['dir']}" + (f"  ERROR: {s['error']}" if "error" in s else "")
        for s in shots
    )
    _emit(args, {"shots": shots, "problems": problems}, human)
    return 0 if any(not s.get("error") for s in shots) else 1


# ------------------------------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    from studio_nova.demo import run_demo

    result = run_demo(Path(args.out), backend=args.backend, orchestrator=args.orchestrator)
    human = "\n".join(
        f"{s['name']:<12} {s['status']:<10} PSNR {s.get('psnr_db')} dB (edit {s.get('psnr_edit_db')} dB), "
        f"SSIM outside edit {s.get('ssim_outside_edit')}, seam {s.get('seam_psnr_db')} dB, {s.get('fps')} fps"
        for s in result["shots"]
    ) + f"\nconformed cut: {result['conformed']}"
    _emit(args, result, human)
    return 0 if all(s["status"] != "failed" for s in result["shots"]) else 1


# ----------------------------------------------------------------------------------- editors, model


def cmd_editors_list(args: argparse.Namespace) -> int:
    from studio_nova.editor_status import editor_statuses, format_statuses

    statuses = editor_statuses()
    _emit(args, {"editors": statuses}, format_statuses(statuses))
    return 0


def cmd_plugins_list(args: argparse.Namespace) -> int:
    """`mattes list` / `backgrounds list`: the same readiness report as `editors list`."""
    from studio_nova.editor_status import format_statuses, plugin_statuses
    from studio_nova.plugins import BACKGROUNDS, MATTES

    kind = args.plugin_kind
    statuses = plugin_statuses({"mattes": MATTES, "backgrounds": BACKGROUNDS}[kind])
    _emit(args, {kind: statuses}, format_statuses(statuses))
    return 0


def cmd_model_init(args: argparse.Namespace) -> int:
    from studio_nova.models.tiny import init_tiny

    if not args.tiny:
        raise StudioNovaError(
            "only --tiny checkpoints can be written here (real weights come from a local "
            "Wan2.1-VACE-1.3B-diffusers folder: set STUDIO_NOVA_NOVA_BASE)"
        )
    checkpoint = init_tiny(Path(args.dir))
    info = checkpoint.to_dict()
    _emit(
        args,
        info,
        f"export STUDIO_NOVA_NOVA_BASE={info['base']} STUDIO_NOVA_NOVA_ADAPTER={info['adapter']}",
    )
    return 0


def cmd_bench_model(args: argparse.Namespace) -> int:
    from studio_nova.bench_model import bench_model

    try:
        result = bench_model(
            args.config,
            args.device,
            steps=args.steps,
            measure_steps=args.measure_steps,
            window=args.window,
            cfg=not args.no_cfg,
            compile=args.compile,
        )
    except ValueError as exc:
        print(f"studio-nova: error: {exc}", file=sys.stderr)
        return 2
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2, default=str) + "\n")
    _emit(args, result, json.dumps(result, indent=2, default=str))
    return 0


# ------------------------------------------------------------------------------------------ train


def cmd_train(args: argparse.Namespace) -> int:
    from studio_nova.training.trainer import preset, train

    overrides = {"learning_rate": args.lr, "checkpoint_every": args.checkpoint_every, "seed": args.seed,
                 "window": args.window}
    given = [f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None]
    if args.resume and given:
        print(f"studio-nova: error: {', '.join(given)} cannot change a resumed run (only --steps can)", file=sys.stderr)
        return 2
    config = args.config if args.resume else preset(args.config or "full", **overrides)
    device = args.device or load_settings().device
    result = train(args.data, args.out, config, steps=args.steps, resume=args.resume, base=args.base,
                   adapter=args.adapter, device=device)
    payload = result.to_dict()
    loss = payload["loss"]
    human = f"trained steps {result.start_step + 1}..{result.final_step} of {result.config.steps} on {result.device}"
    if len(result.loss_history) >= 2 * loss["window"]:
        human += (f"\nloss: first {loss['window']} steps {loss['first_mean']:.5f}, last {loss['window']} steps "
                  f"{loss['last_mean']:.5f} ({100 * loss['decrease']:.1f}% lower)")
    elif result.loss_history:
        human += f"\nloss: mean of the {len(result.loss_history)} steps so far {loss['first_mean']:.5f}"
    human += f"\nadapter: {payload['adapter']}  (STUDIO_NOVA_NOVA_ADAPTER)\ncontact sheet: {payload['contact_sheet']}"
    if result.data.skipped:
        human += f"\nskipped {len(result.data.skipped)} clips: " + "; ".join(
            f"{s.path.name} ({s.reason})" for s in result.data.skipped)
    _emit(args, payload, human)
    return 0


# ----------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="studio-nova", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, **kw)
        p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
        return p

    p = add("demo", help="synthetic footage with a known edit, through the whole pipeline")
    p.add_argument("--out", default="studio-nova-demo", help="output folder (default: %(default)s)")
    p.add_argument("--backend", default=None, help="propagator (default: flow)")
    p.add_argument("--orchestrator", choices=("prefect", "none"), default="prefect")
    p.set_defaults(func=cmd_demo)

    p = add("plan", help="the shots a cut would edit: media, frames, chunks, keyframes")
    p.add_argument("timeline")
    p.set_defaults(func=cmd_plan)

    p = add("run", help="ingest → keyframes → review → render → conform")
    p.add_argument("timeline")
    p.add_argument("--out", required=True, help="output folder (renders, keyframes, store, conformed cut)")
    p.add_argument("--backend", default=None, help="propagator plugin (default: STUDIO_NOVA_BACKEND or flow)")
    p.add_argument("--auto-approve", action="store_true", help="approve every shot's keyframes without review")
    p.add_argument("--format", action="append", choices=CONFORM_FORMATS, help="also write the cut as this")
    p.add_argument(
        "--orchestrator",
        choices=("prefect", "none"),
        default="prefect",
        help="prefect (default; ephemeral when PREFECT_API_URL is unset) or none (in-process)",
    )
    p.set_defaults(func=cmd_run)

    p = add("review", help="list, approve or reject shots waiting for review")
    rsub = p.add_subparsers(dest="review_cmd", required=True)
    for name in ("list", "approve", "reject"):
        r = rsub.add_parser(name)
        r.add_argument("--json", action="store_true")
        r.add_argument("--out", default=None, help="the run's output folder")
        if name == "list":
            r.add_argument("--all", action="store_true", help="every shot, not only those waiting")
        else:
            r.add_argument("shot", help="clip name or cut key (e.g. V1/3)")
            r.add_argument("--notes", default="")
            r.add_argument("--reviewer", default=None)
        if name == "reject":
            r.add_argument("--instruction", default=None, help="new instruction for the re-edit")
            r.add_argument("--seed", type=int, default=None, help="new seed for the re-edit")
    p.set_defaults(func=cmd_review)

    p = add("server", help="a local Prefect server (UI) and the workers of the deployments; Ctrl-C stops")
    p.add_argument("--port", type=int, default=None, help="UI/API port (default: STUDIO_NOVA_PREFECT_PORT or 4200)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--home", default=None, help="PREFECT_HOME of the server (default: Prefect's own)")
    p.add_argument("--logs", default=None, help="folder for the server's and workers' logs")
    p.add_argument("--nightly-out", default=None, help="run folder the nightly render works on")
    p.add_argument("--nightly-cron", default=None,
                   help="when the nightly render runs, 5-field cron in UTC (default: STUDIO_NOVA_NIGHTLY_CRON or 0 1 * * *)")
    p.add_argument("--no-workers", action="store_true", help="only the server (workers run elsewhere)")
    p.set_defaults(func=cmd_server)

    p = add("deploy", help="register the deployments (and work pools) with the Prefect server")
    p.add_argument("--nightly-out", default=None, help="run folder the nightly render works on")
    p.add_argument("--nightly-cron", default=None,
                   help="when the nightly render runs, 5-field cron in UTC (default: STUDIO_NOVA_NIGHTLY_CRON or 0 1 * * *)")
    p.set_defaults(func=cmd_deploy)

    p = add("keyframes", help="keyframe files for painting")
    ksub = p.add_subparsers(dest="keyframes_cmd", required=True)
    k = ksub.add_parser("export", help="write each shot's original keyframes, one folder per shot")
    k.add_argument("timeline")
    k.add_argument("--out", required=True)
    k.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_keyframes_export)

    p = add("editors", help="keyframe editors")
    esub = p.add_subparsers(dest="editors_cmd", required=True)
    e = esub.add_parser("list", help="installed editors and whether each is ready (weights found)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_editors_list)

    for kind, what in (("mattes", "matte sources"), ("backgrounds", "background sources")):
        p = add(kind, help=f"{what} of background replacement")
        psub = p.add_subparsers(dest=f"{kind}_cmd", required=True)
        e = psub.add_parser("list", help=f"installed {what} and whether each is ready (weights found)")
        e.add_argument("--json", action="store_true")
        e.set_defaults(func=cmd_plugins_list, plugin_kind=kind)

    p = add("model", help="model checkpoints")
    msub = p.add_subparsers(dest="model_cmd", required=True)
    m = msub.add_parser("init", help="write a NOVA base + adapter in the real formats")
    m.add_argument("dir")
    m.add_argument("--tiny", action="store_true", help="tiny random weights (tests, CPU demo of --backend nova)")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_model_init)

    p = add("bench", help="benchmarks that write their figures as JSON")
    bsub = p.add_subparsers(dest="bench_cmd", required=True)
    b = bsub.add_parser("model", help="per-chunk cost of plain VACE vs NOVA (cached/recomputed, full/windowed)")
    b.add_argument("--config", choices=("tiny", "full"), default="tiny")
    b.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    b.add_argument("--steps", type=int, default=None, help="denoising steps per chunk (default: 50 full, 2 tiny)")
    b.add_argument("--measure-steps", type=int, default=None, help="steps actually timed (rest extrapolated)")
    b.add_argument("--window", type=int, default=2, help="± latent frames of the windowed variant")
    b.add_argument("--no-cfg", action="store_true", help="no classifier-free guidance batch")
    b.add_argument("--compile", action="store_true", help="torch.compile the transformer")
    b.add_argument("--output", default=None, help="also write the JSON figures to this file")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_model)

    p = add("train", help="train or fine-tune the NOVA adapter on your own clips (no edited pairs needed)")
    p.add_argument("--data", required=True,
                   help="a folder of clips (searched recursively), one clip, or a cut (.otio .edl .xml .fcpxml .aaf)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, contact sheet, train.json")
    p.add_argument("--config", choices=("tiny", "full"), default=None,
                   help="full: 81 frames at 480x832 (default for a new run); tiny: 17 frames at 32x32 on a "
                        "tiny random base (tests, CPU); with --resume: the run's own")
    p.add_argument("--steps", type=int, default=None, help="train up to this step (default: full 8000, tiny 200)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--base", default=None,
                   help="base model folder, diffusers layout (default: STUDIO_NOVA_NOVA_BASE; tiny: a tiny random "
                        "base written into --out)")
    p.add_argument("--adapter", default=None, help="fine-tune this adapter (.safetensors or folder) instead of a new one")
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N (default: STUDIO_NOVA_DEVICE)")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default: full 1e-4)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints")
    p.add_argument("--seed", type=int, default=None, help="seed of the data order, degradations and noise")
    p.add_argument("--window", type=int, default=None,
                   help="cross-attention reach (± latent frames) recorded with the adapter; -1 whole chunk")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        for noisy in ("alembic", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except StudioNovaError as exc:
        if getattr(args, "json", False):
            json.dump({"error": exc.to_dict()}, sys.stdout, indent=2)
            sys.stdout.write("\n")
        print(f"studio-nova: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
