"""Exports: comparison clips and frames, worst-frame sheets, per-frame metrics and an HTML report.

Every writer takes a Comparison (original frames + renditions), writes atomically, refuses to
overwrite without force, reports progress through a callback and checks a cancel flag per frame.
"""

from promptlab.export.clip import CLIP_FORMATS, export_clip, export_frame, write_clip, write_png
from promptlab.export.comparison import Comparison, Rendition, check_cancel, parse_overlay
from promptlab.export.compose import LAYOUTS, Composer, Pane
from promptlab.export.report import export_report
from promptlab.export.sheet import export_sheet, make_sheet, worst_frames
from promptlab.export.tables import export_metrics

__all__ = ["CLIP_FORMATS", "LAYOUTS", "Comparison", "Composer", "Pane", "Rendition", "check_cancel",
           "export_clip", "export_frame", "export_metrics", "export_report", "export_sheet", "make_sheet",
           "parse_overlay", "worst_frames", "write_clip", "write_png"]
