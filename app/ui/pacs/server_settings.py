"""Preferences page for PACS servers: any number of them, each with a "Test connection" button.

The list is kept by :class:`~app.pacs.servers.ServerStore` (JSON, no secrets);
a password or token typed here goes to the system keyring only. Testing a
connection runs as a background job (:class:`~app.ui.pacs.tasks.PacsTasks`).
"""

from __future__ import annotations

import contextlib

from PySide6 import QtCore, QtWidgets

from app.pacs.credentials import (
    KeyringUnavailable,
    delete_secret,
    get_secret,
    keyring_available,
    set_secret,
)
from app.pacs.servers import (
    DEFAULT_CALLING_AE,
    PacsOptions,
    ServerConfig,
    ServerConfigError,
    ServerStore,
)
from app.ui.pacs.tasks import PacsTasks

__all__ = ["ServerSettingsWidget"]

_PROTOCOLS = [("DICOMweb (QIDO-RS / WADO-RS)", "dicomweb"), ("DIMSE (C-FIND / C-GET)", "dimse")]
_AUTH = [("None", "none"), ("Basic (user + password)", "basic"), ("Bearer token", "bearer")]
_RETRIEVE = [("C-GET", "get"), ("C-MOVE to our storage SCP", "move")]


class ServerSettingsWidget(QtWidgets.QWidget):
    """Edit the configured PACS servers.

    Signals
    -------
    servers_changed
        The stored list changed (a dialog's server menu reloads).
    """

    servers_changed = QtCore.Signal()

    def __init__(
        self,
        store: ServerStore | None = None,
        parent: QtWidgets.QWidget | None = None,
        tasks: PacsTasks | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store or ServerStore()
        self.tasks = tasks or PacsTasks(self)
        self._servers: list[ServerConfig] = self.store.load()
        self._build()
        self._reload_list()

    # -- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        self.server_list = QtWidgets.QListWidget()
        self.server_list.currentRowChanged.connect(self._show_row)
        self.add_button = QtWidgets.QPushButton("Add")
        self.remove_button = QtWidgets.QPushButton("Remove")
        self.add_button.clicked.connect(self._add)
        self.remove_button.clicked.connect(self._remove)
        left = QtWidgets.QVBoxLayout()
        left.addWidget(self.server_list)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        left.addLayout(buttons)

        self.name = QtWidgets.QLineEdit()
        self.protocol = QtWidgets.QComboBox()
        for label, value in _PROTOCOLS:
            self.protocol.addItem(label, value)
        self.protocol.currentIndexChanged.connect(self._update_enabled)
        self.base_url = QtWidgets.QLineEdit()
        self.base_url.setPlaceholderText("https://pacs.example.org/dicom-web")
        self.auth = QtWidgets.QComboBox()
        for label, value in _AUTH:
            self.auth.addItem(label, value)
        self.auth.currentIndexChanged.connect(self._update_enabled)
        self.username = QtWidgets.QLineEdit()
        self.secret = QtWidgets.QLineEdit()
        self.secret.setEchoMode(QtWidgets.QLineEdit.EchoMode.Password)
        self.secret.setPlaceholderText(
            "kept in the system keyring" if keyring_available() else "no system keyring here"
        )
        self.ca_file = QtWidgets.QLineEdit()
        self.ca_file.setPlaceholderText("PEM file (default: the system's authorities)")
        self.host = QtWidgets.QLineEdit()
        self.port = QtWidgets.QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(104)
        self.called_ae = QtWidgets.QLineEdit()
        self.calling_ae = QtWidgets.QLineEdit(DEFAULT_CALLING_AE)
        for edit in (self.called_ae, self.calling_ae):
            edit.setMaxLength(16)
        self.retrieve = QtWidgets.QComboBox()
        for label, value in _RETRIEVE:
            self.retrieve.addItem(label, value)
        self.retrieve.currentIndexChanged.connect(self._update_enabled)
        self.move_port = QtWidgets.QSpinBox()
        self.move_port.setRange(1, 65535)
        self.move_port.setValue(11112)
        self.timeout = QtWidgets.QDoubleSpinBox()
        self.timeout.setRange(1, 600)
        self.timeout.setValue(30)
        self.timeout.setSuffix(" s")

        form = QtWidgets.QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Protocol", self.protocol)
        form.addRow("Base URL", self.base_url)
        form.addRow("Authentication", self.auth)
        form.addRow("User name", self.username)
        form.addRow("Password / token", self.secret)
        form.addRow("CA file", self.ca_file)
        form.addRow("Host", self.host)
        form.addRow("Port", self.port)
        form.addRow("Called AE title", self.called_ae)
        form.addRow("Calling AE title", self.calling_ae)
        form.addRow("Retrieve with", self.retrieve)
        form.addRow("Our SCP port", self.move_port)
        form.addRow("Timeout", self.timeout)
        self._form = form

        self.save_button = QtWidgets.QPushButton("Save")
        self.test_button = QtWidgets.QPushButton("Test connection")
        self.save_button.clicked.connect(self.save_current)
        self.test_button.clicked.connect(self.test_connection)
        self.status = QtWidgets.QLabel()
        self.status.setWordWrap(True)
        actions = QtWidgets.QHBoxLayout()
        actions.addWidget(self.save_button)
        actions.addWidget(self.test_button)
        actions.addStretch(1)
        right = QtWidgets.QVBoxLayout()
        right.addLayout(form)
        right.addLayout(actions)
        right.addWidget(self.status)
        right.addStretch(1)

        options = self.store.options()
        self.n_priors = QtWidgets.QSpinBox()
        self.n_priors.setRange(0, 50)
        self.n_priors.setValue(options.n_priors)
        self.cache_gb = QtWidgets.QDoubleSpinBox()
        self.cache_gb.setRange(0.5, 10000)
        self.cache_gb.setValue(options.cache_max_gb)
        self.cache_gb.setSuffix(" GB")
        self.n_priors.valueChanged.connect(self._save_options)
        self.cache_gb.valueChanged.connect(self._save_options)
        general = QtWidgets.QFormLayout()
        general.addRow("Priors fetched by default", self.n_priors)
        general.addRow("Study cache size", self.cache_gb)

        columns = QtWidgets.QHBoxLayout()
        columns.addLayout(left, 1)
        columns.addLayout(right, 2)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(columns, 1)
        layout.addLayout(general)
        self._update_enabled()

    def _update_enabled(self) -> None:
        web = self.protocol.currentData() == "dicomweb"
        auth = self.auth.currentData()
        for widget, on in (
            (self.base_url, web),
            (self.auth, web),
            (self.username, web and auth == "basic"),
            (self.secret, web and auth != "none"),
            (self.ca_file, web),
            (self.host, not web),
            (self.port, not web),
            (self.called_ae, not web),
            (self.calling_ae, not web),
            (self.retrieve, not web),
            (self.move_port, not web and self.retrieve.currentData() == "move"),
        ):
            widget.setEnabled(on)

    # -- list ------------------------------------------------------------------------------
    def _reload_list(self, select: str | None = None) -> None:
        self.server_list.blockSignals(True)
        self.server_list.clear()
        for server in self._servers:
            self.server_list.addItem(server.name)
        self.server_list.blockSignals(False)
        names = [s.name for s in self._servers]
        row = names.index(select) if select in names else (0 if names else -1)
        self.server_list.setCurrentRow(row)
        self._show_row(row)

    def _show_row(self, row: int) -> None:
        self.status.clear()
        self.secret.clear()
        if not 0 <= row < len(self._servers):
            return
        s = self._servers[row]
        self.name.setText(s.name)
        self.protocol.setCurrentIndex(self.protocol.findData(s.protocol))
        self.base_url.setText(s.base_url)
        self.auth.setCurrentIndex(self.auth.findData(s.auth))
        self.username.setText(s.username)
        self.ca_file.setText(s.ca_file)
        self.host.setText(s.host)
        if s.port:
            self.port.setValue(s.port)
        self.called_ae.setText(s.called_ae)
        self.calling_ae.setText(s.calling_ae)
        self.retrieve.setCurrentIndex(self.retrieve.findData(s.retrieve))
        if s.move_port:
            self.move_port.setValue(s.move_port)
        self.timeout.setValue(s.timeout_s)
        self._update_enabled()

    def _add(self) -> None:
        taken = {s.name for s in self._servers}
        name = next(f"PACS {i}" for i in range(1, len(taken) + 2) if f"PACS {i}" not in taken)
        self.server_list.setCurrentRow(-1)
        self.name.setText(name)
        self.base_url.clear()
        self.host.clear()
        self.called_ae.clear()
        self.status.setText("Fill in the server and press Save.")

    def _remove(self) -> None:
        row = self.server_list.currentRow()
        if not 0 <= row < len(self._servers):
            return
        server = self._servers.pop(row)
        delete_secret(server)
        self._persist()
        self._reload_list()

    # -- editing ---------------------------------------------------------------------------
    def current_config(self) -> ServerConfig:
        """The server described by the form.

        Raises
        ------
        ServerConfigError
            A field is missing or invalid.
        """
        web = self.protocol.currentData() == "dicomweb"
        name, timeout_s = self.name.text().strip(), self.timeout.value()
        if web:
            return ServerConfig(
                protocol="dicomweb",
                base_url=self.base_url.text().strip().rstrip("/"),
                auth=self.auth.currentData(),
                username=self.username.text().strip(),
                ca_file=self.ca_file.text().strip(),
                name=name,
                timeout_s=timeout_s,
            )
        return ServerConfig(
            protocol="dimse",
            host=self.host.text().strip(),
            port=self.port.value(),
            called_ae=self.called_ae.text().strip(),
            calling_ae=self.calling_ae.text().strip(),
            retrieve=self.retrieve.currentData(),
            move_port=self.move_port.value() if self.retrieve.currentData() == "move" else 0,
            name=name,
            timeout_s=timeout_s,
        )

    def save_current(self) -> bool:
        """Store the form's server (and its secret in the keyring); False with a message if not."""
        try:
            server = self.current_config()
        except ServerConfigError as exc:
            self.status.setText(str(exc))
            return False
        secret = self.secret.text()
        if secret and server.needs_secret:
            try:
                set_secret(server, secret)
            except KeyringUnavailable as exc:
                self.status.setText(str(exc))
                return False
        row = self.server_list.currentRow()
        old = self._servers[row] if 0 <= row < len(self._servers) else None
        if old is not None and old.name != server.name:
            # Renamed: the secret moves to the new name (unless a new one was typed).
            moved = get_secret(old) if server.needs_secret and not secret else None
            if moved:
                with contextlib.suppress(KeyringUnavailable):
                    set_secret(server, moved)
            delete_secret(old)
        # Edited in place (renames included); a new server, or one of a taken name, replaces it.
        kept = [s for s in self._servers if s.name != server.name]
        if old is not None and old in kept:
            kept[kept.index(old)] = server
        else:
            kept.append(server)
        self._servers = kept
        if not self._persist():
            return False
        self._reload_list(select=server.name)
        self.status.setText(f"Saved {server.name}.")
        return True

    def _persist(self) -> bool:
        try:
            self.store.save(self._servers)
        except (ServerConfigError, OSError) as exc:
            self.status.setText(f"The server list could not be saved: {exc}")
            return False
        self.servers_changed.emit()
        return True

    def test_connection(self) -> None:
        """Check the form's server in the background; the result shows in the status line."""
        try:
            server = self.current_config()
        except ServerConfigError as exc:
            self.status.setText(str(exc))
            return
        secret = self.secret.text()
        if secret and server.needs_secret:
            try:
                set_secret(server, secret)
            except KeyringUnavailable as exc:
                self.status.setText(str(exc))
                return
        self.test_button.setEnabled(False)
        self.status.setText(f"Testing {server.name}…")
        job = self.tasks.echo(server)
        job.signals.succeeded.connect(
            lambda _r: self._tested(f"{server.name}: the server answers.")
        )
        job.signals.failed.connect(self._tested)

    def _tested(self, message: str) -> None:
        self.test_button.setEnabled(True)
        self.status.setText(message)

    def _save_options(self) -> None:
        try:
            options = PacsOptions(
                n_priors=self.n_priors.value(), cache_max_gb=self.cache_gb.value()
            )
            self.store.save_options(options)
        except (ServerConfigError, OSError) as exc:
            self.status.setText(f"The PACS options could not be saved: {exc}")

    def servers(self) -> list[ServerConfig]:
        return list(self._servers)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.tasks.shutdown()
        super().closeEvent(event)
