"""PyInstaller runtime hook: let the standalone app build its demo patient offline.

The demo is simulated from a real CT (``chest-angio``, see app/sim/sources.py).
Installed from source, PriorSync fetches that CT once with ``pip download``; the
standalone app has no pip, so the build bundles the CT in ``<bundle>/demo-data``
and this hook, run before the app's own code, points ``app.paths.shared_data_dir()``
there. A PRIORSYNC_SHARED_DATA set by the user still wins.
"""

import os
import sys
from pathlib import Path

_demo_data = Path(getattr(sys, "_MEIPASS", "")) / "demo-data"
if _demo_data.is_dir():
    os.environ.setdefault("PRIORSYNC_SHARED_DATA", str(_demo_data))
