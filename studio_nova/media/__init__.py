"""Media I/O over ffmpeg (ffmpeg-python driving the binary imageio-ffmpeg ships)."""

from studio_nova.media.info import MediaInfo

__all__ = ["MediaInfo"]
