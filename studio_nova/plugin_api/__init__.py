"""The plugin contracts in one room: what an editor, a propagator, a matte source and a background
source receive and return, and the entry-point registry that finds them."""
