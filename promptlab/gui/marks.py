"""The PREVIEW / STALE mark drawn on the viewer and on the plots (the words and colours: gui/state.py MARKS)."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QWidget

from promptlab.gui.state import MARKS


class MarkLabel(QLabel):
    """A bold coloured strip saying why what is shown is not a fit of the current settings."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mark = ""
        self.setWordWrap(True)
        self.setVisible(False)

    def set_mark(self, mark: str) -> None:
        """One of MARKS' keys, or "" to hide it."""
        self.mark = mark
        color, text = MARKS.get(mark, ("", ""))
        self.setText(text)
        self.setStyleSheet(f"background:{color};color:white;font-weight:bold;padding:3px")
        self.setVisible(bool(mark))
