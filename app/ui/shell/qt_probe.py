"""The doctor's Qt probe: start Qt as the viewer would and report its plugin and OpenGL.

It lives in the UI layer, the only one that imports Qt, and runs only in the child
process that ``priorsync doctor`` starts (``priorsync doctor --qt-probe``), because Qt
aborts the whole process when no platform plugin can start.
"""

from __future__ import annotations

__all__ = ["qt_probe"]


def qt_probe() -> dict[str, object]:
    """Start Qt (as the viewer would) and report its platform plugin and OpenGL.

    Runs only in the child process started by :func:`qt_findings`: Qt aborts the
    process when no platform plugin can start, which must not take the doctor
    with it.
    """
    import PySide6
    from PySide6 import QtCore, QtGui

    report: dict[str, object] = {"pyside6": PySide6.__version__, "qt": QtCore.qVersion()}
    app = QtGui.QGuiApplication([])
    report["platform"] = app.platformName()
    try:
        # pyqtgraph imports these at start; they load the system's libGL.
        from PySide6 import QtOpenGL, QtOpenGLWidgets  # noqa: F401
    except ImportError as exc:
        report["opengl_import"] = str(exc)
        return report
    context = QtGui.QOpenGLContext()
    if not context.create():
        report["opengl"] = None
        return report
    surface = QtGui.QOffscreenSurface()
    surface.setFormat(context.format())
    surface.create()
    if context.makeCurrent(surface):
        gl = context.functions()
        # GL_VENDOR, GL_RENDERER, GL_VERSION
        report["opengl"] = [str(gl.glGetString(name)) for name in (0x1F00, 0x1F01, 0x1F02)]
        context.doneCurrent()
    else:
        report["opengl"] = None
    return report
