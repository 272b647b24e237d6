"""rig: find locking and memory bugs that a patch series brings into Linux DRM."""

__version__ = "0.1.0"
