"""The `flow` propagator: keyframe edits carried through a chunk by optical flow (CPU, no weights).

The plugin's entry point names `studio_nova_plugins.propagators.flow:FlowPropagator`; this
package exists to keep that name while the propagator's parts live in modules of their own.
The model is described in `propagator`, which holds the plugin class; beneath it:

- `scene_cuts`: cuts inside a chunk, and the known frames each frame takes its edit from;
- `edit_model`: a known frame's edit and its two-part (colour + spatial) model;
- `prediction`: an in-between frame's edit, from its known neighbours through flow;
- `colour_lut`: the colour part, a trust-weighted 3-D LUT;
- `guided_filter`: the local linear model behind the spatial part and the gate's edge snap;
- `optical_flow`: DIS flows to the known frames, and warping by them;
- `tiles`: the tile grid that keeps the spatial passes sparse.
"""

from .propagator import FlowPropagator

__all__ = ["FlowPropagator"]
