"""mlops_operator: one Kubernetes operator for the whole machine-learning lifecycle."""

__version__ = "0.1.0"
