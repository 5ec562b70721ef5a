"""The interactive dialog: what will be dragged, what may change, whether the daemon is there, and the parameters.

Built on GimpUi.ProcedureDialog so the parameters are the procedure's own arguments: GIMP stores the values of
the last successful run and restores them next time. Two of them get their own widgets:
- the model, a free-text argument (a daemon may serve any model), offered as a list of what the running daemon
  serves, its default first and named;
- the learning rate, whose 0 means automatic: a check box "automatic" and a number used only when it is off,
  instead of a slider reading "0.0000".
The seed only means something when the layer is not fitted first, so it is greyed out while fitting is on.

Tests: with $DRAGGAN_GIMP_DIALOG_PROBE naming a JSON file {"answer": "ok" | "cancel", "report": path[,
"screenshot": path]}, the shown dialog writes what it shows to `report` (and a PNG of itself) and answers itself,
so a real GIMP under Xvfb can be checked.
"""

from __future__ import annotations

import json
import os
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import Gdk, GimpUi, GLib, GObject, Gtk  # noqa: E402

from .pairs import PairsResult  # noqa: E402
from .params import BY_NAME  # noqa: E402
from .runner import default_model as daemon_default_model  # noqa: E402
from .runner import describe_daemon  # noqa: E402
from .starting import Starter  # noqa: E402
from .suggesting import Suggester  # noqa: E402
from .wording import AUTO_LR_LABEL, SourceInfo, info_text, model_choices  # noqa: E402

MANUAL_LR = 0.002  # offered when automatic is switched off and no rate was set before


def _model_row(config, models: list[str], default_model: str | None) -> tuple[Gtk.Box, Gtk.ComboBoxText]:
    row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
    label = Gtk.Label.new_with_mnemonic(BY_NAME["model"].label + ":")
    row.pack_start(label, False, False, 0)
    combo = Gtk.ComboBoxText()
    label.set_mnemonic_widget(combo)
    combo.set_tooltip_text(BY_NAME["model"].blurb)
    current = config.get_property("model") or ""
    for model_id, text in model_choices(models, default_model, current):
        combo.append(model_id, text)
    combo.set_active_id(current)
    combo.connect("changed", lambda c: config.set_property("model", c.get_active_id() or ""))
    row.pack_start(combo, True, True, 0)
    return row, combo


def _learning_rate_row(config) -> tuple[Gtk.Box, Gtk.CheckButton, Gtk.SpinButton]:
    param = BY_NAME["learning-rate"]
    row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
    rate = float(config.get_property(param.name) or 0.0)
    auto = Gtk.CheckButton.new_with_mnemonic(AUTO_LR_LABEL)
    auto.set_tooltip_text(param.blurb)
    auto.set_active(rate <= 0.0)
    adjustment = Gtk.Adjustment(
        value=rate if rate > 0 else MANUAL_LR,
        lower=0.0001,
        upper=float(param.maximum),
        step_increment=0.0001,
        page_increment=0.001,
    )
    spin = Gtk.SpinButton(adjustment=adjustment, digits=4)
    spin.set_tooltip_text("Learning rate used when 'automatic' is off")
    spin.set_sensitive(not auto.get_active())

    def sync(*_args) -> None:
        spin.set_sensitive(not auto.get_active())
        config.set_property(param.name, 0.0 if auto.get_active() else float(spin.get_value()))

    auto.connect("toggled", sync)
    spin.connect("value-changed", sync)
    row.pack_start(auto, True, True, 0)
    row.pack_start(spin, False, False, 0)
    return row, auto, spin


def _action_row(worker, mnemonic: str, tooltip: str, interval_ms: int, on_finished) -> tuple[Gtk.Box, Gtk.Button]:
    """A button that starts `worker` (a Starter or a Suggester: start(), poll(), busy, text) and a line saying how it
    goes, polled from a GLib timer so GIMP stays usable; when it ends, `on_finished()` says whether the button goes."""
    row = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=3)
    button = Gtk.Button.new_with_mnemonic(mnemonic)
    button.set_tooltip_text(tooltip)
    label = Gtk.Label(label="", xalign=0.0, selectable=True)
    label.set_line_wrap(True)
    label.set_max_width_chars(80)

    def tick() -> bool:
        worker.poll()
        label.set_text(worker.text)
        if worker.busy:
            return True
        if on_finished():
            button.hide()
        else:
            button.set_sensitive(True)
        return False

    def clicked(_button) -> None:
        button.set_sensitive(False)
        label.set_text(worker.start())
        if worker.busy:
            GLib.timeout_add(interval_ms, tick)
        else:
            button.set_sensitive(True)

    button.connect("clicked", clicked)
    row.pack_start(button, False, False, 0)
    row.pack_start(label, False, False, 0)
    return row, button


def _start_row(starter: Starter, on_ready) -> tuple[Gtk.Box, Gtk.Button]:
    """ "Start the daemon" and what came of it; `on_ready(hello)` once the started daemon answers."""

    def finished() -> bool:
        if starter.state != "ready":
            return False
        on_ready(starter.hello)
        return True

    tooltip = (
        "Start DragGAN Studio's daemon on this computer (the program the plug-in was installed from, unless "
        "'Daemon program' or $DRAGGAN_DAEMON_COMMAND names another). It keeps running when GIMP closes."
    )
    return _action_row(starter, "_Start the daemon", tooltip, 300, finished)


def _suggest_row(suggester: Suggester, combo: Gtk.ComboBoxText) -> tuple[Gtk.Box, Gtk.Button]:
    """ "Suggest a model" and its outcome; the best model is then chosen in `combo` (the person may change it)."""

    def finished() -> bool:
        if suggester.state == "done" and suggester.best and not combo.set_active_id(suggester.best):
            combo.append(suggester.best, suggester.best)  # a model the box did not list yet
            combo.set_active_id(suggester.best)
        return False

    tooltip = (
        "Fit this layer briefly into every model the daemon serves and choose the one that reproduces it best "
        "(a few seconds per model on a CPU for small models)"
    )
    return _action_row(suggester, "Suggest a _model", tooltip, 200, finished)


def _press_and_wait(button: Gtk.Button, worker, seconds: float) -> None:
    """Test hook: click `button` and run GTK's loop until `worker` is no longer busy (at most `seconds`)."""
    button.clicked()
    end = time.monotonic() + seconds
    while worker.busy and time.monotonic() < end:
        Gtk.main_iteration_do(False)
        time.sleep(0.02)
    while Gtk.events_pending():
        Gtk.main_iteration()


def run_dialog(
    procedure,
    config,
    plugin_name: str,
    pairs: PairsResult,
    daemon_line: str,
    models: list[str],
    default_model: str | None = None,
    source: SourceInfo | None = None,
    starter: Starter | None = None,
    suggester: Suggester | None = None,
) -> bool:
    """Show the dialog; True when the person pressed OK (the config then holds their choices).

    With `starter` (no daemon answered), the dialog offers "Start the daemon"; once it answers, the header and
    the model list show it, as for a daemon that was running already. With `suggester`, "Suggest a model" under
    the model box ranks the daemon's models for this layer and picks the best."""
    GimpUi.init(plugin_name)
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "DragGAN: Drag")
    content = dialog.get_content_area()
    header = Gtk.Label(label=info_text(pairs, daemon_line, source), xalign=0.0, selectable=True)
    header.set_line_wrap(True)
    header.set_max_width_chars(80)
    content.pack_start(header, False, False, 3)
    # In the order a person reads them: what the result is, how long, how big the steps, how firm the rest, which
    # model, and where the drag starts from (fill() appends GIMP's widgets for the arguments named).
    dialog.fill(["settings", "output", "steps"])
    lr_row, auto, spin = _learning_rate_row(config)
    content.pack_start(lr_row, False, False, 3)
    dialog.fill(["mask-strength"])
    start_button = None
    if starter is not None:

        def on_ready(hello) -> None:
            header.set_text(info_text(pairs, describe_daemon(hello), source))
            current = config.get_property("model") or ""
            combo.remove_all()
            for model_id, text in model_choices(list(hello.get("models") or []), daemon_default_model(hello), current):
                combo.append(model_id, text)
            combo.set_active_id(current)

        start_row, start_button = _start_row(starter, on_ready)
        content.pack_start(start_row, False, False, 3)
        dialog.fill(["daemon-command"])  # set once if the daemon found automatically is not the one to start
    model_row, combo = _model_row(config, models, default_model)
    content.pack_start(model_row, False, False, 3)
    suggest_button = None
    if suggester is not None:
        suggest_row, suggest_button = _suggest_row(suggester, combo)
        content.pack_start(suggest_row, False, False, 3)
    dialog.fill(["invert-first", "seed", "preview-layer", "frames", "frame-ms"])
    dialog.set_sensitive("seed", True, config, "invert-first", True)  # the seed counts only without fitting

    dialog.show_all()
    probe = os.environ.get("DRAGGAN_GIMP_DIALOG_PROBE")
    if probe:
        GLib.timeout_add(
            500, _probe, dialog, config, header, auto, spin, combo, probe, start_button, starter, suggest_button,
            suggester,
        )  # fmt: skip
    accepted = bool(dialog.run())
    dialog.destroy()
    return accepted


def _probe(
    dialog, config, header, auto, spin, combo, control: str, start_button=None, starter=None, suggest_button=None,
    suggester=None,
) -> bool:  # fmt: skip
    """Test hook: write what the dialog shows, check the seed's greying both ways, then answer it. With
    "start_daemon" in the orders, first press "Start the daemon" and wait (at most a minute) for what comes of it."""
    with open(control, encoding="utf-8") as f:
        orders = json.load(f)
    started = {}
    if orders.get("start_daemon"):
        started["offered"] = start_button is not None and start_button.get_visible()
        if start_button is not None:
            _press_and_wait(start_button, starter, 60)
            started.update(state=starter.state, text=starter.text, button_visible=start_button.get_visible())
    suggested = {}
    if orders.get("suggest") and suggest_button is not None:
        _press_and_wait(suggest_button, suggester, 90)
        suggested = {"state": suggester.state, "text": suggester.text, "best": suggester.best,
                     "model": config.get_property("model"),
                     "button_sensitive": suggest_button.get_sensitive()}  # fmt: skip
    if orders.get("screenshot"):
        window = dialog.get_window()
        shot = Gdk.pixbuf_get_from_window(window, 0, 0, window.get_width(), window.get_height())
        shot.savev(orders["screenshot"], "png", [], [])
    seed = dialog.get_widget("seed", GObject.TYPE_NONE)
    fitting = bool(config.get_property("invert-first"))
    report = {
        "rows": [_row_name(child) for child in dialog.get_content_area().get_children() if child.get_visible()],
        "header": header.get_text(),
        "model": combo.get_active_text(),
        "models": [row[0] for row in combo.get_model()],
        "lr_auto": auto.get_active(),
        "lr_label": auto.get_label(),
        "lr_spin_sensitive": spin.get_sensitive(),
        "seed_sensitive": {str(fitting): seed.get_sensitive()},
        "started": started,
        "suggested": suggested,
    }
    config.set_property("invert-first", not fitting)
    while Gtk.events_pending():
        Gtk.main_iteration()
    report["seed_sensitive"][str(not fitting)] = seed.get_sensitive()
    config.set_property("invert-first", fitting)
    with open(orders["report"], "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    dialog.response(Gtk.ResponseType.OK if orders.get("answer") == "ok" else Gtk.ResponseType.CANCEL)
    return False


def _row_name(widget) -> str:
    """A dialog row as a test names it: the text of its first label (or check box), else its type."""
    todo = [widget]
    while todo:
        w = todo.pop(0)
        if isinstance(w, (Gtk.Label, Gtk.CheckButton)) and (w.get_label() or "").strip():
            return w.get_label().replace("_", "").split("\n")[0]
        if isinstance(w, Gtk.Container):
            todo.extend(w.get_children())
    return type(widget).__name__
