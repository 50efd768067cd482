"""lad_ref: reference implementation of LAD (Learning Advantage Distribution)."""
__version__ = "0.1.0"
