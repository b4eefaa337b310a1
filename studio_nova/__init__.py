"""studio-nova: batch keyframe-guided video editing for post-production."""

__version__ = "0.1.0"
