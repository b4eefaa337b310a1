"""The `studio-nova` application: its command groups, logging, and exit statuses."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Sequence

import typer

from studio_nova.app.cli import keyframes, model, plugins, review, run, server
from studio_nova.app.cli.output import Session, report_error
from studio_nova.errors import StudioNovaError

app = typer.Typer(
    name="studio-nova",
    help="Batch keyframe-guided video editing: a cut in, edited shots out, the cut conformed.\n\n"
         "Every command prints a short human summary, or with --json one JSON document on stdout (logs go to "
         "stderr). Exit status: 0 when something could run (per-shot failures are in the output), 1 when nothing "
         "could run, 2 for usage errors.",
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
app.add_typer(keyframes.app, name="keyframes")
for _name, _group in plugins.GROUPS.items():
    app.add_typer(_group, name=_name)
app.add_typer(model.model_app, name="model")
app.add_typer(model.bench_app, name="bench")
app.command("train")(model.train)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status is returned (the console script exits with it)."""
    session = Session()
    command = typer.main.get_command(app)
    try:
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
    except typer.Abort:
        print("Aborted!", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0
