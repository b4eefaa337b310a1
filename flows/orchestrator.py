"""Prefect as the runner's orchestrator: the `prefect` entry point of `studio_nova.orchestrators`.

The application asks for "an orchestrator" by name and never imports this package; this module is
the one seam between the two. Prefect reads PREFECT_API_URL when it is first imported, so nothing
here imports Prefect until `connect` has set it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from studio_nova.app.runner import GateAnswer, Registration
from studio_nova.app.server import find_local_api
from studio_nova.config import Settings
from studio_nova.store import ShotRecord
from studio_nova.workflow.review_gate import Answer


def _prepare_ephemeral(out: Path) -> None:
    """Ephemeral Prefect keeps its database inside --out so a run writes nothing elsewhere."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not os.environ.get("PREFECT_API_URL") and not os.environ.get("PREFECT_HOME"):
        os.environ["PREFECT_HOME"] = str(out / ".prefect")


class PrefectOrchestrator:
    """Runs cuts as Prefect flows, review gates as paused runs, renders on the GPU pool."""

    def connect(self, settings: Settings) -> str | None:
        """PREFECT_API_URL, else a `studio-nova server` on this machine's port; None means no
        server (ephemeral Prefect, reviews through the CLI only)."""
        url = os.environ.get("PREFECT_API_URL") or find_local_api(settings.prefect_port)
        if url:
            os.environ["PREFECT_API_URL"] = url
            os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        return url

    def run_cut(
        self, timeline: Path, out: Path, *, settings: Settings, backend: str | None,
        auto_approve: bool, formats: Sequence[str], gate: bool,
    ) -> dict[str, Any]:
        _prepare_ephemeral(out.resolve())
        if gate:
            self._ensure_deployments(settings)
        from studio_nova_flows.run import run_flow

        return run_flow(
            timeline=str(timeline), out=str(out), backend=backend, auto_approve=auto_approve,
            formats=list(formats), gate=gate,
        )

    def answer_review(self, store_url: str, out: Path, shot: ShotRecord, answer: Answer) -> GateAnswer:
        from studio_nova_flows.deployments import answer_gate

        outcome = answer_gate(store_url, str(out), shot.id, shot.status, answer)
        return GateAnswer(outcome.action, str(outcome.flow_run_id) if outcome.flow_run_id else None)

    def register(self, settings: Settings, *, nightly_out: str | None, nightly_cron: str) -> Registration:
        from studio_nova_flows import deployments

        names = deployments.register(nightly_out=nightly_out, nightly_cron=nightly_cron)
        return Registration(names, [p.name for p in deployments.POOLS])

    def run_url(self, run_id: str) -> str:
        api = os.environ.get("PREFECT_API_URL", "")
        return f"{api.rsplit('/api', 1)[0]}/runs/flow-run/{run_id}"

    @staticmethod
    def _ensure_deployments(settings: Settings) -> None:
        """Register only what is missing: re-registering the nightly here would pause it (a run
        knows no --nightly-out)."""
        from studio_nova_flows import deployments

        present = deployments.registered()
        missing = [s for s in deployments.DEPLOYMENTS if s.full_name not in present]
        if missing:
            deployments.register(specs=missing, nightly_cron=settings.nightly_cron)
