"""medanomaly: anomaly detection in medical images learned from healthy images only."""

__version__ = "0.1.0"
