"""The interactive dialog: what will be dragged, whether the daemon is there, and the run's parameters.

Built on GimpUi.ProcedureDialog so the parameters are the procedure's own arguments: GIMP stores the values of
the last successful run and restores them next time. The model is a free-text argument (a daemon may serve any
model), offered here as a combo box of what the running daemon has loaded.
"""

from __future__ import annotations

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import GimpUi, Gtk  # noqa: E402

from .pairs import PairsResult  # noqa: E402
from .params import PARAMS  # noqa: E402

MAX_LISTED_PAIRS = 8


def info_text(pairs: PairsResult, daemon_line: str) -> str:
    """The dialog's header: the pairs found (the first few listed) and the daemon's state."""
    lines = [pairs.summary() + ":"]
    listed = pairs.describe()
    lines += ["  " + line for line in listed[:MAX_LISTED_PAIRS]]
    if len(listed) > MAX_LISTED_PAIRS:
        lines.append(f"  ... and {len(listed) - MAX_LISTED_PAIRS} more")
    lines += ["", "Daemon: " + daemon_line]
    return "\n".join(lines)


def run_dialog(procedure, config, plugin_name: str, pairs: PairsResult, daemon_line: str, models: list[str]) -> bool:
    """Show the dialog; True when the person pressed OK (the config then holds their choices)."""
    GimpUi.init(plugin_name)
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "DragGAN: Drag")
    dialog.fill([p.name for p in PARAMS if p.in_dialog and p.name != "model"])

    content = dialog.get_content_area()
    header = Gtk.Label(label=info_text(pairs, daemon_line), xalign=0.0, selectable=True)
    header.set_line_wrap(True)
    content.pack_start(header, False, False, 6)
    content.reorder_child(header, 0)

    row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
    row.pack_start(Gtk.Label(label="Model:", use_underline=False), False, False, 0)
    combo = Gtk.ComboBoxText.new_with_entry()
    combo.append_text("")  # the daemon's default model
    for name in models:
        combo.append_text(name)
    combo.get_child().set_text(config.get_property("model") or "")
    combo.connect("changed", lambda c: config.set_property("model", c.get_active_text() or ""))
    row.pack_start(combo, True, True, 0)
    content.pack_start(row, False, False, 6)
    content.reorder_child(row, 1)

    dialog.show_all()
    accepted = bool(dialog.run())
    dialog.destroy()
    return accepted
