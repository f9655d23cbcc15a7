"""File ▸ Open from PACS: search a server, open a study as the current one, then fetch its priors.

The dialog only shows and asks; :class:`~app.ui.pacs.tasks.PacsTasks` does
the networking in the background. Fetched studies leave through
:attr:`OpenFromPacsDialog.folders_ready`, which the viewer connects to its
normal loading path (``MainWindow.open_paths``), so PACS studies are read,
hung and synced exactly like local folders.
"""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore, QtWidgets

from app.pacs.records import StudyQuery, StudyRecord
from app.pacs.retrieve import FetchResult
from app.pacs.servers import ServerConfig, ServerStore
from app.ui.pacs.tasks import PacsTasks

__all__ = ["OpenFromPacsDialog"]

_COLUMNS = ("Date", "Modality", "Description", "Series", "Images", "Patient")


def _count(n: int | None) -> str:
    return "" if n is None else str(n)


class OpenFromPacsDialog(QtWidgets.QDialog):
    """Search studies on a configured server and open one, then its newest priors.

    Parameters
    ----------
    servers
        The servers to offer (default: the stored ones).
    tasks
        Background jobs (tests pass one with a private cache).
    n_priors
        How many of the newest earlier CT studies to fetch by default
        (default: the user's setting, Preferences ▸ PACS).

    Signals
    -------
    folders_ready(list)
        Series folders (``list[Path]``) to open: the current study's first,
        then the priors' once they have arrived.
    """

    folders_ready = QtCore.Signal(list)

    def __init__(
        self,
        parent: QtWidgets.QWidget | None = None,
        servers: list[ServerConfig] | None = None,
        tasks: PacsTasks | None = None,
        n_priors: int | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open from PACS")
        self.resize(860, 600)
        self.tasks = tasks or PacsTasks(self)
        store = ServerStore()
        self._servers = servers if servers is not None else store.load()
        if n_priors is None:
            n_priors = store.options().n_priors
        self._studies: list[StudyRecord] = []
        self._priors: list[StudyRecord] = []
        self._current_job = None
        self._build(n_priors)
        self._set_busy(None)

    # -- layout ----------------------------------------------------------------------------
    def _build(self, n_priors: int) -> None:
        self.server_box = QtWidgets.QComboBox()
        for server in self._servers:
            self.server_box.addItem(server.name)
        self.patient_id = QtWidgets.QLineEdit()
        self.patient_name = QtWidgets.QLineEdit()
        self.patient_name.setPlaceholderText("DOE* (wildcards)")
        self.accession = QtWidgets.QLineEdit()
        self.date_from = QtWidgets.QLineEdit()
        self.date_to = QtWidgets.QLineEdit()
        for edit in (self.date_from, self.date_to):
            edit.setPlaceholderText("YYYY-MM-DD")
            edit.setMaxLength(10)
        for edit in (
            self.patient_id,
            self.patient_name,
            self.accession,
            self.date_from,
            self.date_to,
        ):
            edit.returnPressed.connect(self.search)
        self.search_button = QtWidgets.QPushButton("Search")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)

        form = QtWidgets.QGridLayout()
        form.addWidget(QtWidgets.QLabel("Server"), 0, 0)
        form.addWidget(self.server_box, 0, 1, 1, 3)
        form.addWidget(QtWidgets.QLabel("Patient ID"), 1, 0)
        form.addWidget(self.patient_id, 1, 1)
        form.addWidget(QtWidgets.QLabel("Name"), 1, 2)
        form.addWidget(self.patient_name, 1, 3)
        form.addWidget(QtWidgets.QLabel("Accession"), 2, 0)
        form.addWidget(self.accession, 2, 1)
        dates = QtWidgets.QHBoxLayout()
        dates.addWidget(self.date_from)
        dates.addWidget(QtWidgets.QLabel("to"))
        dates.addWidget(self.date_to)
        form.addWidget(QtWidgets.QLabel("Study date"), 2, 2)
        form.addLayout(dates, 2, 3)
        form.addWidget(self.search_button, 3, 3)

        self.results = QtWidgets.QTableWidget(0, len(_COLUMNS))
        self.results.setHorizontalHeaderLabels(_COLUMNS)
        self.results.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.results.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.results.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.results.verticalHeader().setVisible(False)
        header = self.results.horizontalHeader()
        header.setStretchLastSection(True)
        self.results.itemSelectionChanged.connect(self._update_buttons)
        self.results.cellDoubleClicked.connect(lambda *_: self.open_selected())

        self.open_button = QtWidgets.QPushButton("Open as current")
        self.open_button.clicked.connect(self.open_selected)
        self.n_priors = QtWidgets.QSpinBox()
        self.n_priors.setRange(0, 20)
        self.n_priors.setValue(n_priors)
        self.n_priors.setSuffix(" newest priors")
        open_row = QtWidgets.QHBoxLayout()
        open_row.addWidget(QtWidgets.QLabel("Then fetch"))
        open_row.addWidget(self.n_priors)
        open_row.addStretch(1)
        open_row.addWidget(self.open_button)

        self.prior_list = QtWidgets.QListWidget()
        self.prior_list.setMaximumHeight(120)
        self.fetch_button = QtWidgets.QPushButton("Fetch checked priors")
        self.fetch_button.clicked.connect(self.fetch_checked_priors)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setTextVisible(True)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QtWidgets.QLabel()
        self.status.setWordWrap(True)
        progress_row = QtWidgets.QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        prior_box = QtWidgets.QGroupBox("Earlier CT studies of this patient on the server")
        prior_layout = QtWidgets.QVBoxLayout(prior_box)
        prior_layout.addWidget(self.prior_list)
        prior_layout.addWidget(self.fetch_button, 0, QtCore.Qt.AlignmentFlag.AlignRight)

        close = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)

        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.results, 1)
        layout.addLayout(open_row)
        layout.addWidget(prior_box)
        layout.addLayout(progress_row)
        layout.addWidget(self.status)
        layout.addWidget(close)
        if not self._servers:
            self.status.setText("No PACS server is configured: add one in Preferences ▸ PACS.")

    # -- state -----------------------------------------------------------------------------
    def server(self) -> ServerConfig | None:
        i = self.server_box.currentIndex()
        return self._servers[i] if 0 <= i < len(self._servers) else None

    def _set_busy(self, job) -> None:
        self._current_job = job
        busy = job is not None
        self.search_button.setEnabled(not busy and bool(self._servers))
        self.cancel_button.setEnabled(busy)
        self.progress.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)
        self._update_buttons()

    def _update_buttons(self) -> None:
        idle = self._current_job is None
        self.open_button.setEnabled(idle and bool(self.results.selectedItems()))
        self.fetch_button.setEnabled(idle and self.prior_list.count() > 0)

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _failed(self, message: str) -> None:
        self._set_busy(None)
        self.status.setText(message)

    def _cancelled(self) -> None:
        self._set_busy(None)
        self.status.setText("Cancelled; nothing partial was kept.")

    def _run(self, job, on_success) -> None:
        job.signals.progress.connect(self._on_progress)
        job.signals.succeeded.connect(on_success)
        job.signals.failed.connect(self._failed)
        job.signals.cancelled.connect(self._cancelled)
        self._set_busy(job)

    # -- search ----------------------------------------------------------------------------
    def query(self) -> StudyQuery:
        """The form as a query.

        Raises
        ------
        ValueError
            A date is not a date, or the range is reversed.
        """

        def day(text: str) -> str:
            return text.strip().replace("-", "")

        return StudyQuery(
            patient_id=self.patient_id.text().strip(),
            patient_name=self.patient_name.text().strip(),
            accession=self.accession.text().strip(),
            date_from=day(self.date_from.text()),
            date_to=day(self.date_to.text()),
        )

    def search(self) -> None:
        server = self.server()
        if server is None or self._current_job is not None:
            return
        try:
            query = self.query()
        except ValueError as exc:
            self.status.setText(str(exc))
            return
        if query.is_empty():
            self.status.setText("Give a patient ID, a name, an accession number or dates.")
            return
        self.status.setText(f"Searching {server.name}…")
        self._run(self.tasks.search(server, query), self._show_results)

    def _show_results(self, studies: list[StudyRecord]) -> None:
        self._set_busy(None)
        self._studies = studies
        self.results.setRowCount(len(studies))
        for row, s in enumerate(studies):
            values = (
                s.display_date,
                "/".join(s.modalities),
                s.description,
                _count(s.n_series),
                _count(s.n_instances),
                s.patient_name.replace("^", " ").strip(),
            )
            for col, value in enumerate(values):
                item = QtWidgets.QTableWidgetItem(value)
                if col in (3, 4):
                    item.setTextAlignment(
                        QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter
                    )
                self.results.setItem(row, col, item)
        self.results.resizeColumnsToContents()
        self.status.setText(f"{len(studies)} studies found." if studies else "No study found.")
        if studies:
            self.results.selectRow(0)

    # -- open ------------------------------------------------------------------------------
    def selected_study(self) -> StudyRecord | None:
        rows = {i.row() for i in self.results.selectedItems()}
        return self._studies[min(rows)] if rows else None

    def open_selected(self) -> None:
        server, study = self.server(), self.selected_study()
        if server is None or study is None or self._current_job is not None:
            return
        self.prior_list.clear()
        self.status.setText(f"Fetching the {study.display_date} study…")
        self._run(self.tasks.open_current(server, study), self._opened)

    def _opened(self, outcome: tuple[FetchResult, list[StudyRecord]]) -> None:
        self._set_busy(None)
        result, priors = outcome
        self._priors = priors
        where = "the local cache" if result.from_cache else "the server"
        self.status.setText(
            f"Opened the current study ({result.study.n_instances} images, from {where}); "
            f"{len(priors)} earlier CT studies on the server."
        )
        self.folders_ready.emit(list(result.study.series_folders))
        n = self.n_priors.value()
        for i, prior in enumerate(priors):
            item = QtWidgets.QListWidgetItem(
                f"{prior.display_date}  {prior.description}  "
                f"({_count(prior.n_instances) or '?'} images)"
            )
            item.setFlags(item.flags() | QtCore.Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(
                QtCore.Qt.CheckState.Checked if i < n else QtCore.Qt.CheckState.Unchecked
            )
            self.prior_list.addItem(item)
        self._update_buttons()
        if n and priors:
            self.fetch_checked_priors()

    def checked_priors(self) -> list[StudyRecord]:
        return [
            self._priors[i]
            for i in range(self.prior_list.count())
            if self.prior_list.item(i).checkState() == QtCore.Qt.CheckState.Checked
        ]

    def fetch_checked_priors(self) -> None:
        server, chosen = self.server(), self.checked_priors()
        if server is None or not chosen or self._current_job is not None:
            return
        self.status.setText(f"Fetching {len(chosen)} prior studies in the background…")
        self._run(self.tasks.fetch_priors(server, chosen), self._priors_fetched)

    def _priors_fetched(self, results: list[FetchResult]) -> None:
        self._set_busy(None)
        folders: list[Path] = [f for r in results for f in r.study.series_folders]
        cached = sum(r.from_cache for r in results)
        self.status.setText(
            f"Fetched {len(results)} prior studies ({cached} from the local cache); "
            "they hang beside the current one, synced."
        )
        self.folders_ready.emit(folders)

    def cancel(self) -> None:
        self.tasks.cancel_all()

    def done(self, result: int) -> None:  # noqa: D102 - QDialog override: stop jobs first
        self.tasks.shutdown()
        super().done(result)
