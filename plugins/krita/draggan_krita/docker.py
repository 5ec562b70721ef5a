"""The "DragGAN" docker: daemon state, source layer and region, point pairs, the five buttons, progress, errors,
and a collapsible Parameters section.

`DragPanel` is a plain QWidget (tested on its own); `DragGanDocker` wraps it in Krita's DockWidget.
"""

from __future__ import annotations

from typing import Any

from draggan_protocol import parameters as table
from draggan_protocol.outcome import model_label
from draggan_protocol.progress import plural
from PyQt5.QtCore import QEvent, Qt, QTimer
from PyQt5.QtGui import QColor, QPalette
from PyQt5.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import settings as settings_mod
from .controller import APPLYING, DONE, DRAGGING, FITTING, IDLE, OPENING, QUEUED, STOPPING, EditController
from .document import DocumentError
from .link import CONNECTING, OFFLINE, READY, DaemonLink

# Hues for states and messages; each is made light or dark enough to read on the theme's own background (Krita's
# dark themes made a fixed dark green unreadable).
RED, ORANGE, GREEN = "#b00020", "#a86400", "#1b7a1b"
_STATE_COLOR = {OFFLINE: RED, CONNECTING: ORANGE, READY: GREEN}
MIN_CONTRAST = 4.5  # WCAG AA for body text


def _luminance(c: QColor) -> float:
    def channel(v: int) -> float:
        x = v / 255.0
        return x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(c.red()) + 0.7152 * channel(c.green()) + 0.0722 * channel(c.blue())


def contrast_ratio(a: QColor, b: QColor) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


_READABLE: dict[tuple[str, int, float], str] = {}


def readable(color: str, background: QColor, minimum: float = MIN_CONTRAST) -> str:
    """`color`'s hue, lightened on a dark background or darkened on a light one until it reads against it."""
    key = (color, background.rgb(), minimum)
    if key not in _READABLE:
        _READABLE[key] = _readable(color, background, minimum)
    return _READABLE[key]


def _readable(color: str, background: QColor, minimum: float) -> str:
    c = QColor(color)
    h, sat, light, _ = c.getHslF()
    step = 0.02 if _luminance(background) < 0.2 else -0.02
    while contrast_ratio(c, background) < minimum and 0.0 < light < 1.0:
        light = min(max(light + step, 0.0), 1.0)
        c = QColor.fromHslF(max(h, 0.0), sat, light)
    return c.name()


DAEMON_COMMAND_KEY = "daemon_command"
"""The setting (kritarc, group DragGAN) naming the daemon program or the DragGAN Studio folder, when the one found
automatically is not the one to use."""

OUTPUT_CHOICES = (
    ("transfer", "Keep my pixels (move them)"),
    ("generator", "Generator's picture"),
)
OUTPUT_TIP = (
    "Keep my pixels (move them): the result is your own layer, at its own resolution, moved the way the "
    "generator moved its picture; only what truly appears (an opened mouth, teeth) comes from the generator.\n"
    "Generator's picture: the edited area shows the generator's own picture, scaled to the layer (what DragGAN "
    "itself does; softer, and it replaces your detail)."
)


class DragPanel(QWidget):
    def __init__(self, app: Any, link: DaemonLink, store: settings_mod.Store, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.app = app
        self.link = link
        self.store = store
        self.params = settings_mod.load(store)
        self._source_ok = False  # whether the source layer may be edited (Fit and Drag are enabled)
        self.controller = EditController(link, app, self.params, self)
        self._build()
        link.state_changed.connect(self.refresh)
        self.controller.changed.connect(self.refresh)
        self._observer = QTimer(self)  # layer, selection and points change without signals we can hook
        self._observer.setInterval(700)
        self._observer.timeout.connect(self.observe)
        self._observer.start()
        self.observe()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.daemon_label = QLabel()
        self.daemon_label.setWordWrap(True)
        self.daemon_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.daemon_label)
        self.start_daemon_button = QPushButton("Start the daemon")
        self.start_daemon_button.setToolTip(
            "Start DragGAN Studio's daemon on this computer (the program the plugin was installed from, or the one "
            f"set as “{DAEMON_COMMAND_KEY}” in the DragGAN settings); it keeps running when Krita closes"
        )
        self.start_daemon_button.clicked.connect(self.start_daemon)
        lay.addWidget(self.start_daemon_button)
        self.source_label = QLabel()
        self.source_label.setWordWrap(True)
        lay.addWidget(self.source_label)
        self.region_label = QLabel()
        self.region_label.setWordWrap(True)
        lay.addWidget(self.region_label)

        points_row = QHBoxLayout()
        self.points_label = QLabel("Points")
        points_row.addWidget(self.points_label, 1)
        self.points_button = QPushButton("Points layer")
        self.points_button.setToolTip("Create or select the “Drag points” vector layer; draw handle→target lines on it")
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Remove every line from the points layer")
        points_row.addWidget(self.points_button)
        points_row.addWidget(self.clear_button)
        lay.addLayout(points_row)
        self.pairs_list = QListWidget()
        self.pairs_list.setMaximumHeight(90)
        lay.addWidget(self.pairs_list)

        grid = QGridLayout()
        self.fit_button = QPushButton("Fit")
        self.fit_button.setToolTip("Fit the layer (or selection) into the model; Drag does this by itself if needed")
        self.drag_button = QPushButton("Drag")
        self.drag_button.setToolTip("Move each handle to its target")
        self.stop_button = QPushButton("Stop")
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Discard the drags and remove the preview")
        self.apply_button = QPushButton("Apply")
        self.apply_button.setToolTip("Keep the result as a new layer named after the source")
        self.animation_button = QPushButton("Apply as animation")
        self.animation_button.setToolTip(
            "Put the drag's frames above the source: one animated layer with a frame per kept step on the timeline "
            "(a group of layers, one per frame, where Krita cannot). Needs “Keep frames” before the drag"
        )
        self.frames_check = QCheckBox("Keep frames")
        self.frames_check.setToolTip(
            "Let the daemon keep the drag's frames (every step, or every few steps on long drags), for Apply as "
            "animation; it renders every step's picture, so a drag takes a little longer"
        )
        for i, b in enumerate((self.fit_button, self.drag_button, self.stop_button)):
            grid.addWidget(b, 0, i)
        grid.addWidget(self.reset_button, 1, 0)
        grid.addWidget(self.apply_button, 1, 1)
        grid.addWidget(self.animation_button, 1, 2)
        grid.addWidget(self.frames_check, 2, 0, 1, 3)
        lay.addLayout(grid)

        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        lay.addWidget(self.progress)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        lay.addWidget(self.status_label)
        self.warning_label = QLabel()
        self.warning_label.setWordWrap(True)
        lay.addWidget(self.warning_label)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.error_label)

        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setText("Parameters")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        lay.addWidget(self.advanced_toggle)
        self.advanced = QWidget()
        form = QFormLayout(self.advanced)
        form.setContentsMargins(0, 0, 0, 0)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(*settings_mod.Params.LIMITS["steps"])
        self.lr_spin = QDoubleSpinBox()
        self.lr_spin.setDecimals(4)
        self.lr_spin.setSingleStep(0.0005)
        self.lr_spin.setRange(*settings_mod.Params.LIMITS["lr"])
        self.lr_spin.setSpecialValueText("Auto")  # shown at 0: the daemon scales it to the model's size
        self.lr_spin.setToolTip("How far the picture may change per step. Auto suits most models.")
        self.mask_spin = QDoubleSpinBox()
        self.mask_spin.setRange(*settings_mod.Params.LIMITS["mask_weight"])
        self.preview_spin = QSpinBox()
        self.preview_spin.setRange(*settings_mod.Params.LIMITS["preview_every"])
        self.preview_spin.setSpecialValueText("Off")  # 0: no preview layer while dragging, only the result
        for widget, name in (
            (self.steps_spin, "steps"),
            (self.mask_spin, "mask_weight"),
            (self.preview_spin, "preview_every"),
        ):
            widget.setToolTip(table.get(name).help)  # the words every client shows (draggan_protocol.parameters)
        self.settings_combo = QComboBox()  # the drag preset: this project's settings or the official DragGAN's
        for value, label in settings_mod.Params.PRESETS:
            self.settings_combo.addItem(label, value)
        self.settings_combo.setToolTip(table.get("preset").help)
        self.model_combo = QComboBox()
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(["fast", "quality"])
        self.output_combo = QComboBox()
        for value, label in OUTPUT_CHOICES:
            self.output_combo.addItem(label, value)
        self.output_combo.setToolTip(OUTPUT_TIP)
        self.detail_combo = QComboBox()  # the previews' detail: drafts at the drag's pace, or in full
        detail = table.get("preview_detail")
        for value, label in zip(detail.choices, detail.choice_labels, strict=True):
            self.detail_combo.addItem(label, value)
        self.detail_combo.setToolTip(detail.help)
        form.addRow("Settings", self.settings_combo)
        form.addRow("Result", self.output_combo)
        form.addRow("Steps", self.steps_spin)
        form.addRow("Learning rate", self.lr_spin)
        form.addRow("Mask strength", self.mask_spin)
        form.addRow("Preview every", self.preview_spin)
        form.addRow("Preview detail", self.detail_combo)
        form.addRow("Fit quality", self.preset_combo)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        self.suggest_button = QPushButton("Suggest")
        self.suggest_button.setToolTip(
            "Fit the source layer briefly into every model the daemon serves and choose the one that reproduces it "
            "best (a few seconds per model on a CPU for small models)"
        )
        model_row.addWidget(self.suggest_button)
        form.addRow("Model", model_row)
        lay.addWidget(self.advanced)
        lay.addStretch(1)

        self._load_params_into_widgets()
        self.advanced_toggle.toggled.connect(self._toggle_advanced)
        for w in (self.steps_spin, self.preview_spin):
            w.valueChanged.connect(self._save_params)
        for w in (self.lr_spin, self.mask_spin):
            w.valueChanged.connect(self._save_params)
        self.model_combo.currentIndexChanged.connect(self._save_params)
        self.preset_combo.currentIndexChanged.connect(self._save_params)
        self.output_combo.currentIndexChanged.connect(self._save_params)
        self.detail_combo.currentIndexChanged.connect(self._save_params)
        self.settings_combo.currentIndexChanged.connect(self._save_params)

        c = self.controller
        self.fit_button.clicked.connect(c.fit)
        self.suggest_button.clicked.connect(c.suggest)
        c.suggested.connect(self.choose_model)
        self.drag_button.clicked.connect(c.drag)
        self.stop_button.clicked.connect(c.stop)
        self.reset_button.clicked.connect(c.reset)
        self.apply_button.clicked.connect(c.apply)
        self.animation_button.clicked.connect(c.apply_animation)
        self.frames_check.toggled.connect(lambda on: setattr(c, "keep_frames", bool(on)))
        self.points_button.clicked.connect(self.select_points_layer)
        self.clear_button.clicked.connect(self.clear_points)
        self.refresh()

    # ------------------------------------------------------------------ parameters
    def _load_params_into_widgets(self) -> None:
        p = self.params
        self._loading = True
        self.steps_spin.setValue(p.steps)
        self.lr_spin.setValue(p.lr)
        self.mask_spin.setValue(p.mask_weight)
        self.preview_spin.setValue(p.preview_every)
        self.preset_combo.setCurrentText(p.invert_preset)
        self.output_combo.setCurrentIndex(max(self.output_combo.findData(p.output), 0))
        self.detail_combo.setCurrentIndex(max(self.detail_combo.findData(p.preview_detail), 0))
        self.settings_combo.setCurrentIndex(max(self.settings_combo.findData(p.preset), 0))
        self._fill_models()
        self.advanced_toggle.setChecked(p.show_advanced)
        self._toggle_advanced(p.show_advanced, save=False)
        self._loading = False

    def _fill_models(self) -> None:
        self._loading_models = True
        current = self.params.model
        self.model_combo.clear()
        self.model_combo.addItem("daemon default", "")
        for m in self.link.models():
            self.model_combo.addItem(model_label(m), m.get("name", ""))  # name, size, what it draws
            if m.get("licence"):
                self.model_combo.setItemData(self.model_combo.count() - 1, f"Licence: {m['licence']}", Qt.ToolTipRole)
        idx = self.model_combo.findData(current)
        if idx < 0 and current:
            self.model_combo.addItem(f"{current} (not loaded)", current)
            idx = self.model_combo.count() - 1
        self.model_combo.setCurrentIndex(max(idx, 0))
        self._loading_models = False

    def _toggle_advanced(self, on: bool, save: bool = True) -> None:
        self.advanced.setVisible(on)
        self.advanced_toggle.setArrowType(Qt.DownArrow if on else Qt.RightArrow)
        if save:
            self.params.show_advanced = on
            settings_mod.save(self.store, self.params)

    def choose_model(self, name: str) -> None:
        """Select `name` in the model box (as a person would) and remember it."""
        idx = self.model_combo.findData(name)
        if idx < 0:
            self.model_combo.addItem(name, name)
            idx = self.model_combo.count() - 1
        self.model_combo.setCurrentIndex(idx)  # saved through currentIndexChanged
        self._save_params()

    def _save_params(self, *_: Any) -> None:
        if getattr(self, "_loading", False) or getattr(self, "_loading_models", False):
            return
        p = self.params
        p.steps = self.steps_spin.value()
        p.lr = self.lr_spin.value()
        p.mask_weight = self.mask_spin.value()
        p.preview_every = self.preview_spin.value()
        p.invert_preset = self.preset_combo.currentText()
        p.output = self.output_combo.currentData() or "transfer"
        p.preview_detail = self.detail_combo.currentData() or table.default("preview_detail")
        p.preset = self.settings_combo.currentData() or table.default("preset")
        p.model = self.model_combo.currentData() or ""
        settings_mod.save(self.store, p.clamp())

    # ------------------------------------------------------------------ actions
    def start_daemon(self) -> None:
        """Start the daemon detached; the link connects once it runs, or shows why it stopped."""
        self.link.start_daemon(self.store.read(DAEMON_COMMAND_KEY) or "")
        self.refresh()

    def select_points_layer(self) -> None:
        kdoc = self.controller.document()
        if kdoc is None:
            self.controller.error = "Open an image first."
            self.refresh()
            return
        layer = kdoc.ensure_points_layer()
        kdoc.doc.setActiveNode(layer)
        self.controller.note(
            "Draw straight lines on “Drag points” with the line tool: start at a handle, end at its target."
        )
        self.observe()

    def clear_points(self) -> None:
        kdoc = self.controller.document()
        if kdoc is not None and kdoc.clear_points():
            self.controller.note("Points cleared (Ctrl+Z brings them back). Press “Points layer” to draw new ones.")
        self.observe()

    # ------------------------------------------------------------------ display
    def color(self, hue: str) -> str:
        """A stylesheet colour of this hue that reads on the panel's background (the theme's palette)."""
        return f"color: {readable(hue, self.palette().color(QPalette.Window))};"

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.PaletteChange and hasattr(self, "pairs_list"):  # a new theme: recolour
            self.observe()

    def observe(self) -> None:
        """Re-read what the document looks like now (active layer, selection, points)."""
        c = self.controller
        source, why = c.observe_active_layer()
        kdoc = c.document()
        self.pairs_list.clear()
        if kdoc is None:
            self._source_ok = False
            self.source_label.setText("No image open.")
            _style(self.source_label, "")
            self.region_label.setText("")
            self.points_label.setText("Points")
            self.refresh()
            return
        try:
            kdoc.check_source(source, why)
            self._source_ok = True
            self.source_label.setText(f"Source layer: “{source.name()}”" + (f" ({why})" if why else ""))
            _style(self.source_label, "")
        except DocumentError as exc:
            self._source_ok = False  # Fit and Drag wait until there is something they may edit
            self.source_label.setText(str(exc))
            _style(self.source_label, self.color(RED))
        self.region_label.setText(kdoc.describe_region())
        pairs = kdoc.pairs()
        for i, p in enumerate(pairs, 1):
            self.pairs_list.addItem(f"{i}: {p.text()}")
        if kdoc.points_layer() is None:
            self.points_label.setText("Points: press “Points layer”, then draw lines")
        else:
            self.points_label.setText(f"Points: {plural(len(pairs), 'pair')}")
        self.refresh()

    def refresh(self) -> None:
        link, c = self.link, self.controller
        text = link.describe()
        if link.ready and c.queue_position > 0:
            text = f"Busy — your job is number {c.queue_position} in the daemon's queue"
        self.daemon_label.setText(text)
        self.start_daemon_button.setVisible(link.state == OFFLINE)
        self.start_daemon_button.setEnabled(not link.launching)
        hue = _STATE_COLOR.get(link.state)
        _style(self.daemon_label, self.color(hue) if hue else "")
        if link.ready and self.model_combo.count() != len(link.models()) + 1:
            self._fill_models()
        phase = c.phase
        ready = link.ready
        here = c.on_work_document()
        can_start = ready and phase in (IDLE, DONE) and self._source_ok
        self.fit_button.setEnabled(can_start)
        self.suggest_button.setEnabled(can_start)
        self.drag_button.setEnabled(can_start)
        self.stop_button.setEnabled(phase in (OPENING, QUEUED, FITTING, DRAGGING))
        self.reset_button.setEnabled(here and phase in (IDLE, DONE) and (c.session is not None or phase == DONE))
        self.apply_button.setEnabled(here and ready and phase == DONE)
        self.animation_button.setEnabled(here and ready and c.has_frames)
        value, maximum = c.progress
        if phase in (OPENING, QUEUED, STOPPING, APPLYING) or (phase == FITTING and maximum <= 0):
            self.progress.setRange(0, 0)  # busy indicator
        else:
            self.progress.setRange(0, max(maximum, 1))
            self.progress.setValue(min(value, max(maximum, 1)) if phase in (FITTING, DRAGGING, DONE) else 0)
        shown = c.shows_status()  # what was said about another document stays with it
        self.status_label.setText(c.status if shown else "")
        warning = c.warning if here else ""
        self.warning_label.setText(warning)
        _style(self.warning_label, self.color(ORANGE))
        self.warning_label.setVisible(bool(warning))
        error = c.error if shown else ""
        self.error_label.setText(error)
        _style(self.error_label, self.color(RED))
        self.error_label.setVisible(bool(error))


def _style(widget: QWidget, css: str) -> None:
    if widget.styleSheet() != css:  # restyling is not free, and refresh runs on every progress event
        widget.setStyleSheet(css)


def make_docker_class() -> type:
    """The DockWidget subclass (built lazily: `krita` only exists inside Krita or its test double)."""
    from krita import DockWidget, Krita

    from .link import DaemonLink

    class DragGanDocker(DockWidget):
        def __init__(self) -> None:
            super().__init__()
            self.setWindowTitle("DragGAN")
            app = Krita.instance()
            self.link = DaemonLink(parent=self)
            self.panel = DragPanel(app, self.link, settings_mod.default_store(app), self)
            self.setWidget(self.panel)
            self.link.start()

        def canvasChanged(self, canvas: Any) -> None:
            self.panel.observe()

    return DragGanDocker
