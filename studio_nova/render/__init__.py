"""Rendering a shot: chunk by chunk through a propagator, overlaps blended, composited at full
resolution, encoded and checked (QC). Knows nothing of the store; `studio_nova.workflow` records it."""
