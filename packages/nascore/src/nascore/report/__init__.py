"""Reports: markdown tables (ours beside the paper's) and figures, from MLflow + DVC metrics."""
from nascore.report.markdown import write_report

__all__ = ["write_report"]
