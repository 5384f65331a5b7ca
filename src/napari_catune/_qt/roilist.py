"""The ROI list: every ROI with its SNR, sortable; selection follows the session."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QAbstractTableModel, QItemSelection, QItemSelectionModel, QModelIndex, Qt
from qtpy.QtCore import QSortFilterProxyModel
from qtpy.QtWidgets import (
    QAbstractItemView, QHBoxLayout, QHeaderView, QPushButton, QSpinBox, QTableView,
    QVBoxLayout, QWidget,
)

from ..session import MAX_ROIS
from .layout import Reflow


class RoiModel(QAbstractTableModel):
    """ROI id and SNR columns over arrays (no per-cell items: 10,000 ROIs list at once)."""

    HEAD = ("ROI", "SNR")

    def __init__(self):
        super().__init__()
        self.ids = np.zeros(0, np.int64)
        self.snr = np.zeros(0)

    def set_data(self, ids, snr) -> None:
        self.beginResetModel()
        self.ids = np.asarray(ids, np.int64)
        self.snr = np.nan_to_num(np.asarray(snr, float), nan=-1.0)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()):  # noqa: N802 - Qt API
        return 0 if parent.isValid() else len(self.ids)

    def columnCount(self, parent=QModelIndex()):  # noqa: N802 - Qt API
        return 2

    def data(self, index, role=Qt.DisplayRole):
        if role not in (Qt.DisplayRole, Qt.UserRole):
            return None
        r, c = index.row(), index.column()
        if c == 0:
            return int(self.ids[r])
        v = float(self.snr[r])
        return round(v, 2) if role == Qt.DisplayRole else v

    def headerData(self, section, orientation, role=Qt.DisplayRole):  # noqa: N802
        if role == Qt.DisplayRole and orientation == Qt.Horizontal:
            return self.HEAD[section]
        return None


class RoiList(QWidget):
    """Table of ROIs plus *most active* and *random*; bound to ``session.selection``."""

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.model = RoiModel()
        self.proxy = QSortFilterProxyModel()
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.UserRole)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 4)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.count = QSpinBox()
        self.count.setRange(1, MAX_ROIS)
        self.count.setValue(4)
        self.count.setToolTip("How many ROIs Most active and Random select")
        self.most_active_btn = QPushButton("Most active")
        self.most_active_btn.setToolTip("Select the ROIs with the highest SNR")
        self.random_btn = QPushButton("Random")
        self.random_btn.setToolTip("Select ROIs at random (a check that the parameters suit "
                                   "typical cells, not only the brightest)")
        pair = QWidget()
        pl = QHBoxLayout(pair)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(self.most_active_btn, 1)
        pl.addWidget(self.random_btn, 1)
        btns = QWidget()
        bl = QHBoxLayout(btns)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addWidget(self.count)
        bl.addWidget(pair, 1)
        self._reflow = Reflow(btns)  # narrow: the count above the buttons
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.table, 1)
        lay.addWidget(btns)
        self._block = False
        self.table.selectionModel().selectionChanged.connect(self._user_selected)
        self.most_active_btn.clicked.connect(
            lambda: session.select(session.most_active(self.count.value())))
        self.random_btn.clicked.connect(
            lambda: session.select(session.random_rois(self.count.value())))
        session.selection_changed.connect(self.show_selection)
        session.source_changed.connect(self.set_source)

    def close_session(self) -> None:
        for sig, slot in ((self.session.selection_changed, self.show_selection),
                          (self.session.source_changed, self.set_source)):
            try:
                sig.disconnect(slot)
            except Exception:  # noqa: BLE001
                pass

    def set_source(self, src) -> None:
        self._block = True
        try:
            if src is None:
                self.model.set_data([], [])
            else:
                self.model.set_data(src.roi_ids, src.snr)
                self.table.sortByColumn(1, Qt.DescendingOrder)  # most active first
        finally:
            self._block = False

    def listed_ids(self) -> list[int]:
        """ROI ids in the order shown."""
        return [int(self.proxy.index(r, 0).data()) for r in range(self.proxy.rowCount())]

    def selected_ids(self) -> list[int]:
        rows = sorted({self.proxy.mapToSource(i).row()
                       for i in self.table.selectionModel().selectedRows()})
        return [int(self.model.ids[r]) for r in rows]

    def show_selection(self, ids) -> None:
        want = set(int(i) for i in ids)
        sel = QItemSelection()
        rows = np.flatnonzero(np.isin(self.model.ids, list(want))) if want else []
        for r in rows:
            a = self.proxy.mapFromSource(self.model.index(int(r), 0))
            b = self.proxy.mapFromSource(self.model.index(int(r), 1))
            sel.select(a, b)
        self._block = True
        try:
            self.table.selectionModel().select(sel, QItemSelectionModel.ClearAndSelect)
        finally:
            self._block = False
        self._scroll_to(ids)

    def _scroll_to(self, ids) -> None:
        """Bring the ROI last added to the selection (a canvas click's) into view,
        unless it is in view already (a click in the list never scrolls it)."""
        ids = [int(i) for i in ids]
        if not ids:
            return
        hit = np.flatnonzero(self.model.ids == ids[-1])
        if not hit.size:
            return
        index = self.proxy.mapFromSource(self.model.index(int(hit[0]), 0))
        if not self.table.viewport().rect().contains(self.table.visualRect(index)):
            self.table.scrollTo(index, QAbstractItemView.PositionAtCenter)

    def select_rows(self, ids) -> None:
        """Select ``ids`` in the table as a user would (tests)."""
        self.table.clearSelection()
        mode = self.table.selectionMode()
        self.table.setSelectionMode(QAbstractItemView.MultiSelection)
        for rid in ids:
            r = int(np.flatnonzero(self.model.ids == rid)[0])
            self.table.selectRow(self.proxy.mapFromSource(self.model.index(r, 0)).row())
        self.table.setSelectionMode(mode)

    def _user_selected(self, *_) -> None:
        if self._block:
            return
        ids = self.selected_ids()
        cur = list(self.session.selection)
        # keep the session's order for ROIs that stay selected
        ordered = [i for i in cur if i in ids] + [i for i in ids if i not in cur]
        if ordered != cur:
            self.session.select(ordered)
