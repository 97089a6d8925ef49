"""Report tables built from saved metric files: our rows beside the paper's and the baselines'."""
from evaluation.reports.build import build_table, read_results, render_markdown, write_report
from evaluation.reports.spec import Column, PaperRow, ResultRow, SpecError, TableSpec, load_spec, spec_from_dict

__all__ = ["Column", "PaperRow", "ResultRow", "SpecError", "TableSpec", "build_table", "load_spec", "read_results",
           "render_markdown", "spec_from_dict", "write_report"]
