"""mme-rep: orchestrator for a multi-mission satellite/climate-data reprocessing platform."""

__version__ = "0.1.0"
