"""Three simulated dates in real viewports, linked by the cursor tool, without the main window.

The point pairs are prepared from the simulator's true slice match (what a
perfect slice engine reports), so the tests need no model and exercise the
cursor's own path: click -> CURSOR channel -> background job -> marks -> paint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6 import QtWidgets

from app.core.state import Channel, SyncGroup, ViewportState
from app.ml.anatomy.sync_service import SyncEngine
from app.ml.points.cursor_pairs import PairStatus
from app.ml.points.locate import PointPair
from app.sim.followup import SimulatedScan
from app.ui.points.tool import LinkedCursorTool
from app.ui.sync.anatomical_sync import AnatomicalSync
from app.ui.viewer.mode_switch import ModeSwitch
from app.ui.viewer.viewport import ViewportView


@dataclass
class Screen:
    """The viewports on screen (a :class:`~app.ui.viewer.seams.ViewportSet`)."""

    view_list: list[ViewportView] = field(default_factory=list)

    @property
    def views(self) -> dict[int, ViewportView]:
        return dict(enumerate(self.view_list))

    @property
    def active_view(self) -> ViewportView | None:
        return None

    def viewport_states(self) -> list[ViewportState]:
        return [v.state for v in self.view_list]

    def target_view(self) -> ViewportView | None:
        return self.view_list[0] if self.view_list else None


@dataclass
class Harness:
    window: QtWidgets.QWidget
    sync: SyncGroup
    views: list[ViewportView]
    modes: ModeSwitch
    tool: LinkedCursorTool
    anatomy: AnatomicalSync

    def register(self, pairs: dict[int, PointPair | str]) -> None:
        """Make the current -> prior ``j`` pairs answer (a string: why there is none)."""
        for j, pair in pairs.items():
            status = PairStatus(pair) if isinstance(pair, PointPair) else PairStatus(None, pair)
            self.tool.linked.pairs.add_pair(
                self.views[0].state.volume, self.views[j].state.volume, status
            )

    def close(self) -> None:
        self.tool.shutdown()
        self.anatomy.shutdown()
        for view in self.views:
            view.detach()
        self.window.close()


def build(qtbot, scans: list[SimulatedScan], size=(1200, 420)) -> Harness:
    """A shown window with one viewport per scan (current first), in linked-cursor mode."""
    window = QtWidgets.QWidget()
    layout = QtWidgets.QHBoxLayout(window)
    sync = SyncGroup()
    screen = Screen()
    anatomy = AnatomicalSync(SyncEngine(cache=False), window)
    modes = ModeSwitch(screen, window)
    tool = LinkedCursorTool(sync, anatomy, screen, modes, window)
    views = []
    for i, scan in enumerate(scans):
        state = ViewportState(scan.volume)
        sync.add(state)
        view = ViewportView(state, f"date {i}")
        layout.addWidget(view)
        screen.view_list.append(view)
        tool.attach(view)
        views.append(view)
    sync.set_enabled(Channel.CURSOR, True)
    qtbot.addWidget(window)
    window.resize(*size)
    window.show()
    qtbot.waitExposed(window)
    return Harness(window, sync, views, modes, tool, anatomy)
