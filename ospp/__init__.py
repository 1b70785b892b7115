"""ospp: rehearse Office volume activation against a simulated licence store."""

__version__ = "0.1.0"
