"""The GIMP plug-in's pure logic, without GIMP: path strokes to pairs, pixel buffers, parameters, the outcome's
wording (with a scripted daemon), the installer."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from gimp_env import PLUGIN_DIR  # also puts the plug-in folder on sys.path

from draggan_gimp import pairs as P  # isort: skip
from draggan_gimp import params, pixels  # isort: skip
from draggan_gimp import runner  # isort: skip
from draggan_gimp.errors import DaemonLost, PluginError  # isort: skip
from draggan_gimp.runner import describe_daemon, lower_first, model_names, selection_mask  # isort: skip
from draggan_protocol.outcome import has_arrival, region_warning  # isort: skip
from draggan_protocol.progress import FIT_SHARE, progress_words  # isort: skip


# ---------------------------------------------------------------- strokes -> pairs
def test_anchors_from_bezier_takes_the_middle_of_each_triple() -> None:
    ctrl = [0, 0, 1.5, 2.5, 9, 9, 7, 7, 10.0, 20.0, 8, 8]
    assert P.anchors_from_bezier(ctrl) == [(1.5, 2.5), (10.0, 20.0)]
    with pytest.raises(ValueError):
        P.anchors_from_bezier([1, 2, 3, 4])


def test_first_anchor_is_handle_last_is_target_in_layer_coordinates() -> None:
    strokes = [[(15, 25), (40, 40), (30, 20)], [(50, 60), (55, 61)]]
    result = P.strokes_to_pairs(strokes, offset=(10, 20), size=(100, 100))
    assert [(p.handle, p.target) for p in result.pairs] == [((5, 5), (20, 0)), ((40, 40), (45, 41))]
    assert [p.index for p in result.pairs] == [0, 1]
    assert result.skipped == []
    assert result.summary() == "2 pairs found"


def test_unusable_strokes_are_skipped_with_a_reason() -> None:
    strokes = [
        [(5, 5)],  # a single click
        [(5, 5), (5.2, 5.1)],  # no motion
        [(5, 5), (500, 5)],  # target outside the layer
        [(-3, 5), (5, 5)],  # handle outside the layer
        [(1, 1), (9, 9)],  # fine
        [(float("nan"), 1), (2, 2)],
    ]
    result = P.strokes_to_pairs(strokes, size=(64, 64))
    assert [p.index for p in result.pairs] == [4]
    reasons = dict(result.skipped)
    assert set(reasons) == {0, 1, 2, 3, 5}
    assert "two points" in reasons[0] and "same" in reasons[1] and "outside" in reasons[2] and "outside" in reasons[3]
    assert result.summary() == "1 pair found, 5 strokes skipped"
    text = result.describe()
    assert text[0] == "stroke 5: (1, 1) -> (9, 9)" and len(text) == 6


def test_max_pairs_keeps_the_first() -> None:
    strokes = [[(i, 0), (i, 10)] for i in range(5)]
    result = P.strokes_to_pairs(strokes, max_pairs=3)
    assert [p.index for p in result.pairs] == [0, 1, 2]
    assert [i for i, _ in result.skipped] == [3, 4]


# ---------------------------------------------------------------- pixels
def _mask(w: int, h: int, rect: tuple[int, int, int, int] | None, value: int = 255) -> bytes:
    m = bytearray(w * h)
    if rect:
        x, y, rw, rh = rect
        for yy in range(y, y + rh):
            m[yy * w + x : yy * w + x + rw] = bytes([value]) * rw
    return bytes(m)


@pytest.mark.parametrize("rect", [(0, 0, 1, 1), (3, 4, 5, 2), (0, 0, 16, 9), (15, 8, 1, 1), (7, 0, 2, 9)])
def test_mask_bounds(rect: tuple[int, int, int, int]) -> None:
    assert pixels.mask_bounds(_mask(16, 9, rect, 7), 16, 9) == rect


def test_selection_on_layer() -> None:
    assert pixels.selection_on_layer(_mask(8, 8, None), 8, 8) is None
    sel = pixels.selection_on_layer(_mask(8, 8, (2, 2, 3, 3)), 8, 8)
    assert sel is not None and sel.bounds == (2, 2, 3, 3) and not sel.covers_everything
    assert selection_mask(sel) == sel.mask
    full = pixels.selection_on_layer(_mask(8, 8, (0, 0, 8, 8)), 8, 8)
    assert full is not None and full.covers_everything and selection_mask(full) is None
    assert selection_mask(None) is None
    with pytest.raises(ValueError):
        pixels.mask_bounds(b"\0" * 10, 4, 4)


def test_paste_and_crop_round_trip_with_clipping() -> None:
    w, h = 6, 5
    dst = bytearray(w * h * 4)
    block = bytes(range(3 * 2 * 4))  # 3x2 RGBA
    assert pixels.paste(dst, w, h, block, (2, 1, 3, 2)) == (2, 1, 3, 2)
    assert pixels.crop(dst, w, h, (2, 1, 3, 2)) == block
    assert dst[: w * 4] == bytes(w * 4)  # row 0 untouched
    clipped = bytearray(w * h * 4)
    assert pixels.paste(clipped, w, h, block, (4, 4, 3, 2)) == (4, 4, 2, 1)
    assert clipped[(4 * w + 4) * 4 : (4 * w + 6) * 4] == block[:8]
    assert pixels.paste(clipped, w, h, block, (10, 10, 3, 2)) is None
    with pytest.raises(ValueError):
        pixels.crop(dst, w, h, (5, 0, 3, 1))


# ---------------------------------------------------------------- parameters
def test_settings_defaults_and_clamping() -> None:
    s = params.RunSettings.from_values({})
    assert (s.steps, s.learning_rate, s.mask_strength, s.invert_first, s.model) == (200, 0.0, 20.0, True, "")
    assert "lr" not in s.drag_parameters()  # automatic: the daemon picks it
    s = params.RunSettings.from_values({"steps": 10**9, "learning-rate": -1, "mask-strength": 5, "model": None})
    assert s.steps == 5000 and s.learning_rate == 0.0 and s.mask_strength == 5.0 and s.model == ""
    assert params.RunSettings.from_values({"steps": 7.6}).steps == 8


def test_parameters_match_the_protocol_and_the_pdb_rules() -> None:
    from draggan_protocol.validation import SCHEMAS, validate_request

    allowed = SCHEMAS["drag"]["params"].schema
    s = params.RunSettings.from_values({"steps": 33, "learning-rate": 0.01, "mask-strength": 3})
    sent = s.drag_parameters()
    assert sent == {"preset": "studio", "steps": 33, "lr": 0.01, "mask_weight": 3.0}
    assert set(sent) <= set(allowed)
    validated = validate_request("drag", {"session_id": "x", "points": [[1, 2, 3, 4]], "params": sent})
    assert validated["params"] == sent
    for p in params.PARAMS:  # GIMP's PDB wants lowercase-dashed names and defaults inside the range
        assert p.name == p.name.lower() and "_" not in p.name
        if p.minimum is not None:
            assert p.minimum <= p.default <= p.maximum
    assert params.BY_NAME["steps"].maximum <= allowed["steps"].hi


def progress_text(content, steps, arrival=None, fit_first=False):
    """GIMP's progress line for one event: the client core's fraction and words, after "DragGAN: "."""
    fraction, words = progress_words(content, max_steps=steps, arrival=arrival, fit_first=fit_first)
    return fraction, "DragGAN: " + lower_first(words)


def test_progress_text_and_daemon_description() -> None:
    drag = {"phase": "drag", "step": 5, "max_steps": 20}
    assert progress_text(drag, 200) == (0.25, "DragGAN: dragging, step 5 (at most 20)")
    f, text = progress_text({"phase": "invert", "step": 10, "steps": 40, "stage": "w+"}, 200)
    assert f == 0.25 and text == "DragGAN: fitting your layer into the model (details), 25%"
    whole = {"phase": "invert", "step": 10, "steps": 40, "stage": "w+", "fit_step": 60, "fit_steps": 120}
    assert progress_text(whole, 200) == (0.5, "DragGAN: fitting your layer into the model (details), 50%")
    info = {"device": "cpu", "protocol_version": "1.0", "models": [{"name": "emoji64"}, {"name": "ffhq"}]}
    assert describe_daemon(info) == "running on cpu, protocol 1.0, models: emoji64, ffhq"
    assert model_names(info) == ["emoji64", "ffhq"]


def test_progress_names_the_fit_in_plain_words_and_fills_one_bar() -> None:
    """Issue 11, bug 10: the fit is called fitting, its stages have plain names, fit and drag share one bar."""
    for stage, words in (("w", "overall look"), ("w+", "details"), ("pti", "adjusting the model to your picture")):
        event = {"phase": "invert", "stage": stage, "fit_step": 30, "fit_steps": 120}
        fraction, text = progress_text(event, 200, fit_first=True)
        assert text == f"DragGAN: fitting your layer into the model ({words}), 25%"
        assert fraction == 0.25 * FIT_SHARE
        assert " w" not in text and "pti" not in text
    # The drag fills the rest of the bar; a drag whose handles have come most of the way is most of the way done
    # although it has taken few of its steps (it ends when they arrive).
    assert progress_text({"phase": "drag", "step": 0, "max_steps": 200}, 200, fit_first=True)[0] == FIT_SHARE
    measured = {"asked": [10.0, 8.0], "moved": [8.0, 6.0], "remaining": [2.0, 2.0]}
    fraction, text = progress_text({"phase": "drag", "step": 17, "max_steps": 200}, 200, measured, fit_first=True)
    assert fraction == FIT_SHARE + (1 - FIT_SHARE) * 0.75
    assert text.startswith("DragGAN: dragging, step 17 (at most 200) – Handles moved 8 of 10 px and 6 of 8 px")
    done = {"steps": 17, **measured, "reached": True}
    assert runner.finished_text(done, runner.outcome_text(done)) == (
        "DragGAN: done after 17 steps. Targets reached: handles moved 8 of 10 px and 6 of 8 px (within 2 px)."
    )
    assert runner.finished_text({"steps": 1}, "x").startswith("DragGAN: done after 1 step.")


def test_pairs_are_listed_in_image_coordinates() -> None:
    """Issue 11, bug 9: the rulers show image coordinates, so the dialog and errors do too (sent: layer ones)."""
    result = P.strokes_to_pairs([[(15, 25), (30, 20)], [(5, 5), (6, 6)]], offset=(10, 20), size=(100, 100))
    assert [(p.handle, p.target) for p in result.pairs] == [((5, 5), (20, 0))]  # what the daemon gets
    assert result.describe() == [
        "stroke 1: (15, 25) -> (30, 20)",
        "stroke 2: skipped, it starts or ends outside the layer",
    ]


def test_dialog_header_says_what_is_dragged_and_what_may_change() -> None:
    """Issue 11, bugs 9 and 11: the source (a group: its merged picture), the selection, the pairs, the daemon."""
    from draggan_gimp.wording import SourceInfo, group_note, info_text, model_choices

    pairs = P.strokes_to_pairs([[(15, 25), (30, 20)]], offset=(10, 20), size=(100, 100))
    layer = SourceInfo("Face", 100, 100, (10, 20), selection=(18, 22, 98, 98))
    text = info_text(pairs, "running on cpu", layer)
    assert text.splitlines()[:2] == [
        "Source: the layer 'Face', 100 × 100 px at (10, 20). The result is a new layer above it.",
        "May change: only the selected area, (18, 22) to (97, 97); the rest is held fixed as firmly as "
        "'Mask strength' says. (Not used when the layer is not fitted first.)",
    ]
    assert "1 pair found (image coordinates, as on the rulers):\n  stroke 1: (15, 25) -> (30, 20)" in text
    assert text.endswith("Daemon: running on cpu")
    whole = info_text(pairs, "x", SourceInfo("Face", 100, 100, (10, 20)))
    assert "May change: the whole layer (nothing is selected; select an area to limit the edit)." in whole
    group = SourceInfo("Head", 90, 80, (4, 6), is_group=True)
    assert "the layer group 'Head' as one picture (its visible layers merged)" in info_text(pairs, "x", group)
    assert group_note(group).startswith("The layer group 'Head' was dragged as one picture") and not group_note(layer)
    # The model box is never blank: the default is named (when the daemon says which it is).
    assert model_choices(["emoji64", "ffhq"], "emoji64", "") == [
        ("", "The daemon's default (emoji64)"),
        ("emoji64", "emoji64"),
        ("ffhq", "ffhq"),
    ]
    described = [{"name": "afhq-cat", "resolution": 512, "domain": "cat faces"}, {"name": "tiny", "resolution": 32}]
    assert model_choices(described, "tiny", "afhq-cat") == [
        ("", "The daemon's default (tiny)"),
        ("afhq-cat", "afhq-cat (512 px, cat faces)"),
        ("tiny", "tiny (32 px)"),
    ]
    assert model_choices([], None, "ffhq") == [
        ("", "The daemon's default model"),
        ("ffhq", "ffhq (not on the running daemon)"),
    ]
    assert runner.default_model({"default_model": "emoji64"}) == "emoji64"
    assert runner.default_model({"models": [{"name": "a"}, {"name": "b", "default": True}]}) == "b"


def test_dialog_parameters_explain_automatic_and_seed() -> None:
    """Issue 11, bug 9: 0 means automatic (the dialog shows a check box for it), the seed says when it counts."""
    from draggan_gimp.wording import AUTO_LR_LABEL

    lr = params.BY_NAME["learning-rate"]
    assert lr.default == 0.0 and "0 = automatic" in lr.blurb
    assert "automatic" in AUTO_LR_LABEL
    assert "only when not fitting" in params.BY_NAME["seed"].label
    assert "Off: your layer is not used" in params.BY_NAME["invert-first"].blurb


# ---------------------------------------------------------------- output mode
def test_output_parameter_defaults_to_keeping_the_layers_pixels() -> None:
    from draggan_protocol.client import drag_request
    from draggan_protocol.spec import OUTPUT_MODES
    from draggan_protocol.validation import validate_request

    p = params.BY_NAME["output"]
    assert p.kind == "choice" and p.default == "transfer" and p.in_dialog
    assert tuple(p.nicks()) == OUTPUT_MODES  # every mode the protocol has, nothing else
    labels = {c.nick: c.label for c in p.choices}
    assert labels == {"transfer": "Keep my pixels (move them)", "generator": "Generator's picture"}
    assert "your layer's own pixels" in p.blurb and "generator's own picture" in p.blurb
    assert params.PARAMS[0] is p  # first in the dialog: it decides what the result is made of
    assert params.RunSettings.from_values({}).output == "transfer"
    assert params.RunSettings.from_values({"output": "Generator"}).output == "generator"
    with pytest.raises(PluginError, match="'output' must be one of transfer, generator"):
        params.RunSettings.from_values({"output": "gan"})
    for mode in OUTPUT_MODES:  # what run_drag sends is a valid drag request
        content, _ = drag_request("s", [(1, 2, 3, 4)], output=mode)
        assert validate_request("drag", content)["output"] == mode


# ---------------------------------------------------------------- outcome wording
DONE_REACHED = {
    "state": "done",
    "steps": 40,
    "reached": True,
    "tracker_reached": True,
    "asked": [8.0, 12.0],
    "moved": [7.6, 11.4],
    "remaining": [0.8, 1.2],
    "stop_distance": 1.5,
    "output": "transfer",
}
DONE_SHORT = {**DONE_REACHED, "reached": False, "moved": [7.0, 4.2], "remaining": [1.2, 7.9]}


def test_outcome_words_follow_the_measured_arrival() -> None:
    reached = runner.outcome_text(DONE_REACHED)
    assert reached == "Targets reached: handles moved 7.6 of 8 px and 11 of 12 px (within 1.2 px)."
    short = runner.outcome_text(DONE_SHORT)  # the tracker claims arrival; the measure says otherwise
    assert short == "Handles moved 7 of 8 px and 4.2 of 12 px; not reached (7.9 px still to go)."
    assert "reached:" not in short.lower() and "Targets reached" not in short
    fell_back = runner.outcome_text({**DONE_SHORT, "output": "generator", "fallback": "the motion was not finite"})
    assert fell_back.startswith(short) and fell_back.endswith(
        "The generator's picture was used instead of your pixels here: the motion was not finite."
    )
    # A 1.0 daemon measures nothing: its tracker's claim is said as such, never as "targets reached".
    old = runner.outcome_text({"state": "done", "steps": 9, "reached": True})
    assert "Targets reached" not in old and "point tracker" in old
    assert "did not reach" in runner.outcome_text({"state": "done", "steps": 9, "reached": False})
    assert not has_arrival({"step": 3, "handles": [[1, 2]]}) and has_arrival(DONE_SHORT)


def test_progress_text_shows_the_latest_measured_progress() -> None:
    event = {"phase": "drag", "step": 10, "max_steps": 40, "asked": [12.0], "moved": [5.0], "remaining": [7.0]}
    fraction, text = progress_text(event, 200, event)
    assert fraction == 5 / 12  # the handle has come further (5 of 12 px) than the steps (10 of at most 40)
    assert text == "DragGAN: dragging, step 10 (at most 40) – Handle moved 5 of 12 px; not reached (7 px still to go)"
    assert (
        progress_text({"phase": "drag", "step": 11, "max_steps": 40}, 200)[1]
        == "DragGAN: dragging, step 11 (at most 40)"
    )


def test_large_region_warning() -> None:
    assert region_warning({"region": [0, 0, 600, 300], "resolution": 64}).startswith(
        "The region is 9× the model's 64-px picture"
    )
    assert region_warning({"region": [0, 0, 256, 256], "resolution": 64}) == ""
    assert region_warning({"resolution": 64}) == ""  # a seed session has no region
    assert region_warning({"region": [0, 0, 4200, 3000], "resolution": 512}) != ""


class ScriptedClient:
    """Stands in for the protocol client: answers run_drag's requests from a script of daemon messages.

    A drag's events and job_done arrive in the same poll as its reply, as a fast job's can over a real socket.
    """

    def __init__(
        self, session: dict, events: list[dict], done: dict, size: tuple[int, int], fit: list[dict] = ()
    ) -> None:
        self.session, self.events, self.done, self.size, self.fit = session, events, done, size, list(fit)
        self.sent: list[tuple[str, dict]] = []
        self.inbox: list = []
        self.silent = 0.0  # what daemon_silent_for says

    def _msg(self, msg_type: str, content: dict, parent: str, buffers=()):
        from draggan_protocol.framing import Message

        return Message(msg_type, content, {"msg_id": f"d{len(self.inbox)}", "parent": parent}, list(buffers))

    def send(self, msg_type: str, content: dict | None = None, buffers=()) -> str:
        msg_id = f"c{len(self.sent)}"
        self.sent.append((msg_type, dict(content or {})))
        if msg_type == "open_session":
            self.inbox.append(self._msg("open_session_reply", self.session, msg_id))
        elif msg_type == "drag":
            self.inbox.append(self._msg("drag_reply", {"job_id": "j1"}, msg_id))
            for e in self.fit:
                self.inbox.append(self._msg("progress", {"job_id": "j1", "phase": "invert", **e}, msg_id))
            for e in self.events:
                self.inbox.append(self._msg("progress", {"job_id": "j1", "phase": "drag", **e}, msg_id))
            self.inbox.append(self._msg("job_done", {"job_id": "j1", **self.done}, msg_id))
        elif msg_type == "get_result":
            w, h = self.size
            image = {"width": w, "height": h, "format": "RGBA8", "rect": [0, 0, w, h], "offset": [0, 0], "buffer": 0}
            self.inbox.append(self._msg("get_result_reply", image, msg_id, [bytes(w * h * 4)]))
        return msg_id

    def poll(self, timeout: float = 0.0) -> list:
        out, self.inbox = self.inbox, []
        return out

    def daemon_silent_for(self) -> float:
        return self.silent

    def request(self, msg_type: str, content: dict | None = None, buffers=(), timeout: float = 30.0):
        self.sent.append((msg_type, dict(content or {})))
        return self._msg(msg_type + "_reply", {}, "")


class Told:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.fractions: list[float] = []
        self.messages: list[str] = []

    def status(self, text: str) -> None:
        self.texts.append(text)

    def progress(self, fraction: float, text: str) -> None:
        self.texts.append(text)
        self.fractions.append(fraction)

    def preview(self, image) -> None:
        pass

    def message(self, text: str) -> None:
        self.messages.append(text)

    def stop_requested(self) -> bool:
        return False


def _scripted_run(done: dict, region_side: int, output: str = "transfer"):
    w = h = region_side
    session = {"session_id": "s1", "resolution": 64, "region": [0, 0, w, h], "width": w, "height": h}
    measured = {"asked": [8.0, 12.0], "moved": [3.0, 2.5], "remaining": [5.0, 9.4], "stop_distance": 1.5}
    events = [
        {"step": 5, "max_steps": 40, **measured},
        {"step": 6, "max_steps": 40},  # no preview on this step: the text keeps the last measure
    ]
    client = ScriptedClient(session, events, done, (w, h))
    layer = runner.LayerInput(bytes(w * h * 4), w, h)
    pairs = P.strokes_to_pairs([[(10, 10), (10, 2)], [(30, 30), (42, 30)]], size=(w, h)).pairs
    told = Told()
    settings = params.RunSettings.from_values({"output": output, "steps": 40})
    outcome = runner.run_drag(client, layer, None, pairs, settings, told)
    return client, told, outcome


def test_a_run_says_how_far_the_handles_really_went() -> None:
    client, told, outcome = _scripted_run(DONE_SHORT, 96)
    drag = next(c for t, c in client.sent if t == "drag")
    assert drag["output"] == "transfer" and drag["preview_seconds"] == runner.MEASURE_SECONDS
    step5 = (
        "DragGAN: dragging, step 5 (at most 40) – Handles moved 3 of 8 px and 2.5 of 12 px; not reached "
        "(9.4 px still to go)"
    )
    assert step5 in told.texts
    assert step5.replace("step 5", "step 6") in told.texts
    assert not outcome.reached and outcome.summary == runner.outcome_text(DONE_SHORT)
    assert told.texts[-1] == "DragGAN: done after 40 steps. " + outcome.summary
    assert told.fractions[-1] == 1.0
    assert not any("Targets reached" in t for t in told.texts)
    assert told.messages == [] and outcome.warnings == []  # 96 px is not many times a 64-px model

    client, told, outcome = _scripted_run(DONE_REACHED, 600, output="generator")
    assert next(c for t, c in client.sent if t == "drag")["output"] == "generator"
    assert outcome.reached and told.texts[-1].startswith("DragGAN: done after 40 steps. Targets reached: handles")
    assert len(told.messages) == 1 and told.messages == outcome.warnings
    assert told.messages[0].startswith("The region is 9× the model's 64-px picture")


FIT_EVENTS = [
    {"stage": "w", "step": 10, "steps": 20, "fit_step": 10, "fit_steps": 40},
    {"stage": "w+", "step": 10, "steps": 10, "fit_step": 30, "fit_steps": 40},
    {"stage": "pti", "step": 10, "steps": 10, "fit_step": 40, "fit_steps": 40},
]
LAYER_SESSION = {"session_id": "s1", "resolution": 64, "region": [0, 0, 96, 96], "width": 96, "height": 96}
SEED_SESSION = {"session_id": "s1", "resolution": 64, "width": 64, "height": 64, "source": "seed"}
NO_PIXELS = runner.LayerInput(b"", 96, 96, (10, 20), "Face")  # a seed run sends no pixels
FACE = runner.LayerInput(bytes(96 * 96 * 4), 96, 96, (10, 20), "Face")


def _pairs(strokes, size=None):
    return P.strokes_to_pairs(strokes, size=size).pairs


def test_a_layer_run_says_fitting_while_it_fits_and_ends_with_the_arrival() -> None:
    """Issue 11, bug 10: no "dragging" before the fit is over; the bar ends full, saying whether the handles arrived."""
    events = [{"step": 5, "max_steps": 40, "asked": [8.0], "moved": [3.0], "remaining": [5.0]}]
    client = ScriptedClient(LAYER_SESSION, events, DONE_SHORT, (96, 96), fit=FIT_EVENTS)
    told = Told()
    settings = params.RunSettings.from_values({"steps": 40})
    runner.run_drag(client, FACE, None, _pairs([[(10, 10), (10, 2)]]), settings, told)
    first_drag = next(i for i, t in enumerate(told.texts) if t.startswith("DragGAN: dragging, step"))
    assert told.texts[1] == "DragGAN: fitting your layer into the model"
    assert not any("dragging" in t for t in told.texts[:first_drag])
    assert [t for t in told.texts[:first_drag] if "%" in t] == [
        "DragGAN: fitting your layer into the model (overall look), 25%",
        "DragGAN: fitting your layer into the model (details), 75%",
        "DragGAN: fitting your layer into the model (adjusting the model to your picture), 100%",
    ]
    assert told.fractions == sorted(told.fractions) and told.fractions[2] == FIT_SHARE
    assert told.fractions[-1] == 1.0 and told.texts[-1] == "DragGAN: done after 40 steps. " + runner.outcome_text(
        DONE_SHORT
    )
    # A seed run fits nothing, so it says "dragging" at once and its drag fills the whole bar.
    told = Told()
    seed = params.RunSettings.from_values({"steps": 40, "invert-first": False})
    runner.run_drag(
        ScriptedClient(SEED_SESSION, events, DONE_SHORT, (64, 64)),
        NO_PIXELS,
        None,
        _pairs([[(10, 10), (10, 2)]]),
        seed,
        told,
    )
    assert told.texts[1] == "DragGAN: dragging" and told.fractions[0] == 3 / 8  # the handle: 3 of 8 px


def test_seed_mode_refuses_strokes_off_the_models_picture() -> None:
    """Issue 11, bug 8: without fitting, the model's 64-px picture is dragged; strokes off it are refused in words,
    before any drag, and the session is closed again."""
    client = ScriptedClient(SEED_SESSION, [], DONE_SHORT, (64, 64))
    seed = params.RunSettings.from_values({"invert-first": False, "seed": 3})
    pairs = _pairs([[(10, 10), (12, 10)], [(70, 40), (75, 40)], [(66, 47), (63, 43)]])
    with pytest.raises(PluginError) as err:
        runner.run_drag(client, NO_PIXELS, None, pairs, seed, Told())
    text = str(err.value)
    assert "the model's own picture number 3 instead of your layer: 64 × 64 px, from (10, 20) to (73, 83)" in text
    assert "Stroke 2, (80, 60) -> (85, 60) and 1 other stroke, does not lie on it." in text
    assert "Turn 'Fit my layer into the model first' on" in text
    assert [t for t, _ in client.sent] == ["open_session", "close_session"]  # nothing dragged
    assert client.sent[0][1] == {"source": "seed", "seed": 3, "offset": [10, 20]}
    # Strokes on the picture are dragged (the layer itself does not matter then).
    client = ScriptedClient(SEED_SESSION, [], DONE_SHORT, (64, 64))
    out = runner.run_drag(client, NO_PIXELS, None, pairs[:1], seed, Told())
    assert out.state == "done" and "drag" in [t for t, _ in client.sent]


class SilentAfterReply(ScriptedClient):
    """Answers the drag request, then the daemon is gone: nothing more arrives, heartbeats included."""

    def send(self, msg_type: str, content: dict | None = None, buffers=()) -> str:
        msg_id = super().send(msg_type, content, buffers)
        if msg_type == "drag":
            self.inbox = self.inbox[:1]  # just drag_reply
            self.silent = runner.LOST_AFTER + 0.5
        return msg_id


def test_a_vanished_daemon_is_reported_within_seconds_whatever_the_timeout() -> None:
    """Issue 11, bug 7: missed heartbeats end the run after LOST_AFTER s, not after the 60-s 'timeout' of old
    profiles; nothing more is asked of the daemon (closing its session would cost another wait)."""
    assert runner.LOST_AFTER <= 4.0 and runner.HEARTBEAT_INTERVAL <= 1.0
    assert params.RunSettings.from_values({}).timeout == 4.0
    client = SilentAfterReply(LAYER_SESSION, [], DONE_SHORT, (96, 96))
    old_profile = params.RunSettings.from_values({"timeout": 60.0})
    with pytest.raises(DaemonLost, match="stopped answering while dragging.*The layer is unchanged"):
        runner.run_drag(client, FACE, None, _pairs([[(10, 10), (10, 2)]]), old_profile, Told())
    assert [t for t, _ in client.sent] == ["open_session", "drag"]


class Document:
    """apply.Document that records what it is asked, undo included."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.told = Told()

    def read_layer(self):
        return FACE

    def read_selection(self):
        return None

    def begin_run(self, preview: bool):
        self.log.append("begin")
        return self.told

    def end_run(self) -> None:
        self.log.append("end")

    def undo_group_start(self) -> None:
        self.log.append("undo(")

    def undo_group_end(self) -> None:
        self.log.append(")undo")

    def add_result(self, name: str, image):
        self.log.append(f"add {name}")
        return "new layer"

    def select(self, layer) -> None:
        self.log.append(f"select {layer}")


def test_one_undo_step_per_successful_run_and_none_otherwise() -> None:
    """Issue 11, bugs 6 and 11: no undo group while the daemon works (GIMP's Cancel kills the plug-in then); a
    success is one group holding the new layer, which ends up selected (so Ctrl+F repeats on the result)."""
    from draggan_gimp import apply

    pairs = _pairs([[(10, 10), (10, 2)]])
    doc = Document()
    layer, outcome = apply.drag_into(
        doc, ScriptedClient(LAYER_SESSION, [], DONE_SHORT, (96, 96)), pairs, params.RunSettings()
    )
    assert layer == "new layer" and outcome.state == "done"
    assert doc.log == ["begin", "end", "undo(", "add Face (DragGAN)", "select new layer", ")undo"]

    failed = {
        "state": "failed",
        "code": "invalid_input",
        "message": "the handle at (1, 2) lies outside the edited region",
    }
    refused = ScriptedClient(LAYER_SESSION, [], failed, (96, 96))
    gone = SilentAfterReply(LAYER_SESSION, [], DONE_SHORT, (96, 96))
    for client, error in ((refused, "lies outside the edited region"), (gone, "stopped answering")):
        doc = Document()
        with pytest.raises(PluginError, match=error):
            apply.drag_into(doc, client, pairs, params.RunSettings())
        assert doc.log == ["begin", "end"]  # the preview and progress went; nothing reached the undo stack

    seed = params.RunSettings.from_values({"invert-first": False, "seed": 5})
    doc = Document()
    apply.drag_into(doc, ScriptedClient(SEED_SESSION, [], DONE_SHORT, (64, 64)), pairs, seed)
    assert "add Seed 5 (DragGAN)" in doc.log


# ---------------------------------------------------------------- installer
def test_default_plugins_dir_per_platform(tmp_path: Path) -> None:
    from draggan_daemon.plugin_install import gimp as inst

    home = tmp_path
    assert inst.default_plugins_dir("linux", {}, home) == home / ".config/GIMP/3.0/plug-ins"
    assert inst.default_plugins_dir("linux", {"XDG_CONFIG_HOME": "/x"}, home) == Path("/x/GIMP/3.0/plug-ins")
    flatpak = home / ".var/app/org.gimp.GIMP/config/GIMP/3.0"
    flatpak.mkdir(parents=True)
    assert inst.default_plugins_dir("linux", {}, home) == flatpak / "plug-ins"
    assert inst.default_plugins_dir("win32", {"APPDATA": "C:/AD"}, home) == Path("C:/AD/GIMP/3.0/plug-ins")
    assert inst.default_plugins_dir("darwin", {}, home) == home / "Library/Application Support/GIMP/3.0/plug-ins"
    assert inst.default_plugins_dir("linux", {"GIMP3_DIRECTORY": "/g"}, home) == Path("/g/plug-ins")


def test_install_gives_a_self_contained_plugin_folder(tmp_path: Path) -> None:
    from draggan_daemon.plugin_install import gimp as inst

    dest = tmp_path / "plug-ins"
    assert inst.main(["--dest", str(dest)]) == 0
    folder = dest / "draggan"
    script = folder / "draggan.py"
    assert script.read_bytes() == (PLUGIN_DIR / "draggan.py").read_bytes()
    assert script.stat().st_mode & stat.S_IXUSR
    assert (folder / "draggan_protocol" / "client.py").is_file()
    assert not list(folder.rglob("*.so")) and not list(folder.rglob("__pycache__"))
    # Reinstalling replaces the folder; a foreign folder of the same name is left alone.
    (folder / "stale.txt").write_text("old")
    assert inst.main(["--dest", str(dest)]) == 0 and not (folder / "stale.txt").exists()
    foreign = tmp_path / "other"
    (foreign / "draggan").mkdir(parents=True)
    assert inst.main(["--dest", str(foreign)]) == 1
    # The folder imports under an isolated Python with no site-packages: the plug-in's modules, the protocol
    # client, and the vendored pure-Python msgpack (as on GIMP's own Python for Windows and macOS).
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/vendor']\n"
        "import msgpack, draggan_protocol, draggan_gimp.runner, draggan_gimp.watchdog\n"
        "assert msgpack.unpackb(msgpack.packb({'a': b'x'})) == {'a': b'x'}\n"
        "print(msgpack.__file__)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(folder)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert str(folder / "vendor") in out.stdout


@pytest.mark.parametrize("transport", ["zmtp", "pyzmq"])
def test_connect_says_a_running_daemon_refused_another_key(tmp_path, monkeypatch, transport):
    """Protocol 2.0: a connection file with another daemon's key is refused in the handshake; the plug-in says the
    daemon did not let it in (it is running), not that it should be started."""
    from draggan_protocol import ConnectionInfo, write_connection_file
    from test_daemon_support import running_daemon

    monkeypatch.setenv("DRAGGAN_TRANSPORT", transport)
    with running_daemon() as server:
        path = write_connection_file(ConnectionInfo(server.endpoint, "22" * 32), tmp_path / "other.json")
        with pytest.raises(PluginError) as err:
            runner.connect(params.RunSettings(connection_file=str(path)))
        assert "did not let the plug-in in" in str(err.value) and "key" in str(err.value)
        assert server.stats["received"] == 0
