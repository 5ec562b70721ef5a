#!/usr/bin/env python3
"""DragGAN for GIMP 3: Filters > DragGAN > Drag...

Drag points of a layer to new places with DragGAN, computed by the DragGAN daemon (`draggan serve`). Each stroke
of a path is one drag: its first anchor is the handle, its last anchor the target. A selection limits the edit to
that area. The result becomes a new layer above the source, which stays untouched.

Scripts call the PDB procedure `python-fu-draggan-drag` with the same parameters (see draggan_gimp/params.py).
"""

from __future__ import annotations

import os
import sys
import traceback

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.append(os.path.join(_HERE, "vendor"))  # pure-Python msgpack, used only when GIMP's Python lacks one

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from draggan_protocol.outcome import START_DAEMON  # noqa: E402
from gi.repository import Gimp, GLib, GObject  # noqa: E402

PROCEDURE = "python-fu-draggan-drag"
RW = GObject.ParamFlags.READWRITE


def _add_arguments(procedure: Gimp.Procedure) -> None:
    from draggan_gimp.params import PARAMS

    for p in PARAMS:
        if p.kind == "int":
            procedure.add_int_argument(p.name, p.label, p.blurb, int(p.minimum), int(p.maximum), p.default, RW)
        elif p.kind == "double":
            procedure.add_double_argument(p.name, p.label, p.blurb, p.minimum, p.maximum, p.default, RW)
        elif p.kind == "boolean":
            procedure.add_boolean_argument(p.name, p.label, p.blurb, p.default, RW)
        elif p.kind == "choice":
            choice = Gimp.Choice.new()
            for number, c in enumerate(p.choices):
                choice.add(c.nick, number, c.label, c.help)
            procedure.add_choice_argument(p.name, p.label, p.blurb, choice, p.default, RW)
        else:
            procedure.add_string_argument(p.name, p.label, p.blurb, p.default, RW)
    procedure.add_path_argument("path", "Path", "Path whose strokes are the drags (none: the selected path)", True, RW)
    procedure.add_layer_return_value("layer", "Layer", "The new layer holding the result", True, RW)
    procedure.add_int_return_value("steps", "Steps", "Optimisation steps the drag took", 0, 1000000, 0, RW)
    procedure.add_boolean_return_value(
        "reached", "Reached", "Every handle's content arrived at its target (as the daemon measured it)", False, RW
    )
    procedure.add_string_return_value("outcome", "Outcome", "How far the handles really moved, in plain words", "", RW)
    procedure.add_image_return_value(
        "frames-image", "Frames image", "With 'frames': the new image whose layers are the drag's frames", True, RW
    )


def _error(procedure: Gimp.Procedure, text: str) -> Gimp.ValueArray:
    return procedure.new_return_values(
        Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error.new_literal(Gimp.PlugIn.error_quark(), text, 0)
    )


def _success(procedure: Gimp.Procedure, layer: Gimp.Layer, outcome) -> Gimp.ValueArray:
    values = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
    returned = (
        GObject.Value(Gimp.Layer, layer),
        GObject.Value(GObject.TYPE_INT, int(outcome.steps)),
        GObject.Value(GObject.TYPE_BOOLEAN, bool(outcome.reached)),
        GObject.Value(GObject.TYPE_STRING, outcome.summary),
        GObject.Value(Gimp.Image, outcome.frames_image),
    )
    for index, value in enumerate(returned, start=1):
        values.remove(index)
        values.insert(index, value)
    return values


def drag(procedure, run_mode, image, drawables, config, data):
    """The procedure's body; every failure becomes a plain-words GIMP error, never a traceback or a hang."""
    from draggan_gimp.errors import Cancelled, PluginError

    try:
        return _drag(procedure, run_mode, image, drawables, config)
    except PluginError as exc:
        return _error(procedure, str(exc))
    except Cancelled:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    except Exception as exc:  # a bug: still say something useful, and keep the details on stderr
        traceback.print_exc()
        return _error(procedure, f"DragGAN failed unexpectedly: {type(exc).__name__}: {exc}")


def _drag(procedure, run_mode, image, drawables, config):
    from draggan_gimp import gimp_io, runner
    from draggan_gimp.errors import PluginError
    from draggan_gimp.pairs import strokes_to_pairs
    from draggan_gimp.params import PARAMS, RunSettings

    layer = gimp_io.source_layer(image, drawables)
    path = gimp_io.pick_path(image, config.get_property("path"))
    source = gimp_io.source_info(image, layer)
    size = (source.width, source.height)

    def settings() -> RunSettings:
        return RunSettings.from_values({p.name: config.get_property(p.name) for p in PARAMS})

    conn = None
    try:
        try:
            conn = runner.connect(settings())
            daemon_line = runner.describe_daemon(conn.hello)
        except PluginError:
            if run_mode != Gimp.RunMode.INTERACTIVE:
                raise
            daemon_line = f"not running: press “Start the daemon” below (or start it with: {START_DAEMON}), then OK"
        max_pairs = (conn.hello.get("limits") or {}).get("max_points") if conn else None
        pairs = strokes_to_pairs(read_all := gimp_io.read_strokes(path), source.offset, size, max_pairs)

        if run_mode == Gimp.RunMode.INTERACTIVE:
            from draggan_gimp.dialog import run_dialog
            from draggan_gimp.starting import Starter
            from draggan_gimp.suggesting import Suggester

            models = list(conn.hello.get("models") or []) if conn else []
            default_model = runner.default_model(conn.hello) if conn else None
            starter = None if conn else Starter(settings, runner.connect)
            document = gimp_io.GimpDocument(image, layer)
            suggester = Suggester(settings, runner.connect, document.read_layer, document.read_selection)
            shown = (pairs, daemon_line, models, default_model, source, starter, suggester)
            if not run_dialog(procedure, config, PROCEDURE, *shown):
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        run = settings()
        if not run.invert_first:  # the model's own picture is dragged: its size, not the layer's, bounds the strokes
            pairs = strokes_to_pairs(read_all, source.offset, None, max_pairs)
        if not pairs.pairs:
            detail = "\n".join(pairs.describe()) if read_all else f"The path '{path.get_name()}' has no strokes."
            raise PluginError(
                "No usable path strokes: draw one stroke per point to move, from the point (first anchor) "
                f"to where it should go (last anchor).\n{detail}"
            )
        if conn is None:
            conn = runner.connect(run)
        return _run(procedure, image, layer, source, pairs.pairs, run, conn, run_mode != Gimp.RunMode.NONINTERACTIVE)
    finally:
        if conn is not None:
            conn.close()


def _run(procedure, image, layer, source, pairs, run, conn, interactive):
    from draggan_gimp import apply, gimp_io
    from draggan_gimp.watchdog import Watchdog
    from draggan_gimp.wording import group_note, seed_note

    watchdog = None
    try:
        watchdog = Watchdog(conn.info.endpoint, conn.info.key, conn.client.client_id, conn.curve_text())
    except OSError as exc:
        print(f"draggan: no cancel watchdog ({exc})", file=sys.stderr)
    try:
        # No undo group is open while the daemon works: one is opened only around the new layer (apply.py).
        result, outcome = apply.drag_into(gimp_io.GimpDocument(image, layer), conn.client, pairs, run, watchdog)
    finally:
        if watchdog is not None:
            watchdog.close()
    Gimp.displays_flush()
    # How far the handles really went (never "reached" unless they did): a message for a person at the dialog;
    # scripts and batch runs get it as the 'outcome' return value and on stderr, not a message per call.
    notes = [outcome.summary, group_note(source) if run.invert_first else seed_note(run.seed)]
    if outcome.frames_image is not None:
        if interactive:
            Gimp.Display.new(outcome.frames_image)
        notes.append(
            f"The drag's {len(outcome.frames)} frames opened as a new image, one layer each: Filters > Animation > "
            "Playback plays them, File > Export As … .gif (as animation) writes them."
        )
    told = "\n".join(n for n in notes if n)
    if interactive:
        Gimp.message(told)
    else:
        print("DragGAN: " + told.replace("\n", "\nDragGAN: "), file=sys.stderr, flush=True)
    return _success(procedure, result, outcome)


class DragGan(Gimp.PlugIn):
    def do_set_i18n(self, name):
        return False

    def do_query_procedures(self):
        return [PROCEDURE]

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, drag, None)
        procedure.set_image_types("*")  # non-RGB images get a clear message instead of a greyed-out menu entry
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label("_Drag...")
        procedure.add_menu_path("<Image>/Filters/DragGAN")
        procedure.set_documentation(
            "Drag points of a layer with DragGAN",
            "Each stroke of the path moves the point under its first anchor to its last anchor, as computed by the "
            f"DragGAN daemon (start it with: {START_DAEMON}). A selection limits the edit to that area. The result "
            "is a new layer above the source layer.",
            name,
        )
        procedure.set_attribution("DragGAN Studio", "DragGAN Studio", "2025")
        _add_arguments(procedure)
        return procedure


Gimp.main(DragGan.__gtype__, sys.argv)
