"""The `studio-nova` application: its command groups, logging, and exit statuses."""

from __future__ import annotations

import logging
import signal
import sys
from typing import Annotated, Sequence

import typer

from studio_nova.app.cli import keyframes, model, plugins, review, run, server
from studio_nova.app.cli.output import (
    Session,
    SignalReceived,
    current_session,
    report_error,
    report_internal,
    report_interrupted,
    report_os_error,
    signals_handled,
)
from studio_nova.errors import StudioNovaError

app = typer.Typer(
    name="studio-nova",
    help="Batch keyframe-guided video editing: a cut in, edited shots out, the cut conformed.\n\n"
         "Every command prints a short human summary, or with --json one JSON document on stdout (logs go to "
         "stderr). Exit status: 0 when something could run (per-shot failures are in the output), 1 when nothing "
         "could run, 2 for usage errors, 128 + the signal when stopped by SIGTERM (143) or Ctrl-C (130).",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _Stderr:
    """sys.stderr as it is at each write, so log lines pass above a live progress display."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@app.callback()
def _root(verbose: Annotated[bool, typer.Option("-v", "--verbose", help="debug logging on stderr")] = False) -> None:
    session = current_session()
    if session is not None:
        session.verbose = verbose
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=_Stderr(),
    )
    if not verbose:
        for noisy in ("alembic", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


app.command("demo")(run.demo)
app.command("plan")(run.plan)
app.command("run")(run.run)
app.add_typer(review.app, name="review")
app.command("server")(server.server)
app.command("deploy")(server.deploy)
app.command("worker")(server.worker)
app.add_typer(keyframes.app, name="keyframes")
for _name, _group in plugins.GROUPS.items():
    app.add_typer(_group, name=_name)
app.add_typer(model.model_app, name="model")
app.add_typer(model.bench_app, name="bench")
app.command("train")(model.train)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status is returned (the console script exits with it).

    Whatever stops the command, it answers as the README promises: a `StudioNovaError` as
    `{"error": ...}` (with --json) and one line on stderr, exit status 1; a usage error, 2; SIGTERM
    or Ctrl-C, 128 + the signal (a run stops gracefully at a chunk boundary and reports what
    finished; other commands stop at once); anything unexpected, one line (the traceback with -v)
    and `{"error": {"type": "InternalError", ...}}`, exit status 1.
    """
    session = Session()
    command = typer.main.get_command(app)
    try:
        with signals_handled(session):
            result = command.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="studio-nova",
                                  standalone_mode=False, obj=session)
    except StudioNovaError as exc:
        return report_error(exc, session)
    except typer.TyperException as exc:  # usage errors (exit status 2)
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            print(f"studio-nova: error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt) as exc:
        cause = exc if isinstance(exc, KeyboardInterrupt) else exc.__cause__ or exc.__context__
        if isinstance(cause, SignalReceived) or session.pending is not None:
            return report_interrupted(session.pending or cause.signum, session)
        if isinstance(cause, KeyboardInterrupt):  # Ctrl-C with no handler of ours (not the main thread)
            return report_interrupted(signal.SIGINT, session)
        print("Aborted!", file=sys.stderr)
        return 1
    except Exception as exc:
        if session.pending is not None:  # what the interruption broke on its way out
            logging.getLogger(__name__).debug("after %s", session.pending, exc_info=exc)
            return report_interrupted(session.pending, session)
        if isinstance(exc, OSError):  # a file-system error no check caught: still the path, why, what to do
            return report_os_error(exc, session)
        return report_internal(exc, session)  # a bug or a broken plugin: one line, the traceback with -v
    if session.pending is not None:  # typer made the interrupt an exit status 130; say what stopped it
        return report_interrupted(session.pending, session)
    return result if isinstance(result, int) else 0
