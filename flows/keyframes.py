"""The on-demand deployment's flow: ingest a cut, edit keyframes, open one review gate per shot."""

from __future__ import annotations

from typing import Any

from prefect import flow

from studio_nova_flows.run import run_shots


@flow(name="studio-nova-keyframes", log_prints=True)
def keyframes_flow(
    timeline: str, out: str, backend: str | None = None, formats: list[str] | None = None
) -> dict[str, Any]:
    """ingest → keyframes → a review gate per shot; approved shots are queued for render."""
    return run_shots(timeline, out, backend, False, list(formats or []), gate=True)
