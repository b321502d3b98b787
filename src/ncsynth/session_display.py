"""What the hutch session shows while a synthesis runs, and how it answers Ctrl-C.

* the live table of the analysis (bluesky's ``LiveTable`` on the derived ``fits`` stream):
  time after injection, temperature, radius, width, concentration, yield, reduced χ², a row
  per frame as the fits come (:class:`FitTable`);
* the figure of seed 000 Fig. 1, redrawn as PNG every few frames and at the end
  (:class:`~ncsynth.analysis.display.LiveFigure`);
* a status line while the RunEngine waits (:class:`~ncsynth.progress.StatusLine`);
* at each run's end, once the analysis has caught up, a summary as the dry run prints it
  (:class:`EndOfRun`), also what ``analysis.summary()`` returns (:class:`Summary`);
* repeated "skipped frames" warnings held back after the first of a run (:class:`FirstOnly`),
  their total in the summary;
* one Ctrl-C pauses at once (:class:`PauseAtOnce`) instead of at the next checkpoint;
* a plan that refuses to start (:class:`~ncsynth.errors.RefusedToStart`) says so in one line,
  a pause its options, neither with a traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bluesky.callbacks.core import LiveTable
from bluesky.utils import PauseRequest, RunEngineInterrupted, SigintHandler, TransitionError
from event_model import DocumentRouter

from ncsynth.analysis.live import LiveAnalysis
from ncsynth.errors import RefusedToStart
from ncsynth.plans.frame_account import FrameAccount
from ncsynth.plans.stubs import SKIPPED_FRAMES
from ncsynth.summary_text import format_summary

#: Columns of the live table (the derived run's ``fits`` stream).
MOLAR, MICROMOLAR = "concentration_molar", "concentration_uM"
FIT_COLUMNS = ["time_s", "temperature_c", "radius_nm", "sigma_nm", MICROMOLAR, "yield_fraction",
               "chi2_reduced"]
#: The figure is redrawn every this many frames (and at the run's end).
FIGURE_EVERY = 20
#: Longest wait for the analysis to finish a run before the summary is printed anyway, s.
ANALYSIS_WAIT_S = 60.0


class FitTable(LiveTable):
    """bluesky's LiveTable of the derived run's ``fits`` stream, printing above the status
    line, with the concentration in µmol/L (``concentration_uM``; mol/L at 6 decimals shows
    one digit)."""

    water_mark = "analysis of run {st[raw_uid]:.8s}"

    def __init__(self, terminal):
        super().__init__(FIT_COLUMNS, stream_name="fits", out=terminal.print, min_width=10)
        self._fits: set[str] = set()

    def descriptor(self, doc):
        if doc.get("name") == "fits" and MOLAR in doc["data_keys"]:
            self._fits.add(doc["uid"])
            doc = {**doc, "data_keys": {**doc["data_keys"], MICROMOLAR: {
                **doc["data_keys"][MOLAR], "units": "umol/L", "precision": 3}}}
        return super().descriptor(doc)

    def event(self, doc):
        if doc["descriptor"] in self._fits:
            doc = {**doc, "data": {**doc["data"], MICROMOLAR: doc["data"][MOLAR] * 1e6},
                   "timestamps": {**doc["timestamps"], MICROMOLAR: doc["timestamps"][MOLAR]}}
        return super().event(doc)


class Summary(dict):
    """A run's summary: a dict for code, aligned lines at the prompt (as the dry run's)."""

    def __str__(self) -> str:
        return format_summary(self)

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))


class SessionAnalysis(LiveAnalysis):
    """The live analysis of a session; :meth:`summary` reads as text at the prompt."""

    def summary(self) -> Summary:
        return Summary(super().summary())


class FirstOnly(logging.Filter):
    """Lets the first record of each message pattern through since :meth:`reset`, and counts
    the ones held back (per-frame warnings that would flood the live table)."""

    def __init__(self, *patterns: str):
        super().__init__()
        self.patterns = patterns
        self.held: dict[str, int] = {}

    def reset(self) -> None:
        self.held = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg not in self.patterns:
            return True
        seen = record.msg in self.held
        self.held[record.msg] = self.held.get(record.msg, -1) + 1
        if not seen:
            record.msg += " (more such warnings held back; the run's summary counts them)"
        return not seen


class EndOfRun(DocumentRouter):
    """At a raw run's stop: wait (at most ``ANALYSIS_WAIT_S``) for the analysis to finish it,
    then print the summary: frames taken of those planned, skipped frames (and a lost
    nucleation window, :class:`~ncsynth.plans.frame_account.FrameAccount`), the analysis's results,
    the figure. :attr:`last` keeps it."""

    def __init__(self, terminal, analysis, figure=None, data_dir=None, quiet: FirstOnly | None = None):
        super().__init__()
        self.terminal, self.analysis, self.figure = terminal, analysis, figure
        self.data_dir, self.quiet = data_dir, quiet
        self.last: Summary | None = None
        self._start: dict | None = None
        self._frames = FrameAccount()

    def __call__(self, name, doc):
        self._frames(name, doc)
        return super().__call__(name, doc)

    def start(self, doc):
        if "raw_uid" in doc:
            return
        self._start = doc
        if self.quiet is not None:
            self.quiet.reset()

    def stop(self, doc):
        if self._start is None or doc.get("run_start") != self._start.get("uid"):
            return
        start, self._start = self._start, None
        summary = Summary(uid=start["uid"], scan_id=start.get("scan_id"),
                          exit_status=doc.get("exit_status"),
                          frames=(doc.get("num_events") or {}).get("primary", 0))
        if doc.get("reason") and doc.get("exit_status") != "success":
            summary["error"] = doc["reason"]
        summary.update(self._frames.result)
        held = sum(self.quiet.held.values()) if self.quiet is not None else 0
        if held and "frames_skipped" in summary:
            summary["frames_skipped"] += f"; {held} further warnings held back"
        if self.analysis is not None:
            if not self.analysis.flush(ANALYSIS_WAIT_S):
                summary["analysis_behind"] = f"{self.analysis.backlog} documents still queued"
            summary.update(self.analysis.summary())
        if self.figure is not None:
            summary["figures"] = [str(p) for p in self.figure.paths if start["uid"] in p.name]
        summary["data_dir"] = str(self.data_dir)
        self.last = summary
        self.terminal.print(str(summary))


class PauseAtOnce(SigintHandler):
    """bluesky's Ctrl-C handler with the first Ctrl-C pausing at once (bluesky's default
    defers it to the next checkpoint, which a preheat reaches only once settled). The
    RunEngine then stops the devices it moved (the heater holds its setpoint, the injector
    disarms); ``RE.resume()`` rewinds to the last checkpoint, ``RE.abort()`` ends the run
    with the heater made safe. Ten Ctrl-C within 10 s still raise KeyboardInterrupt."""

    def _watch_request(self) -> None:
        while not self._released:
            if self._request != PauseRequest.NONE:
                try:
                    self._RE.request_pause(defer=False)
                except TransitionError:
                    pass
            self._request_event.wait()
            self._request_event.clear()


class DropRefusals(logging.Filter):
    """bluesky logs a failed plan with its traceback; a refusal to start is said in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], RefusedToStart))


def untraced_interruptions(shell) -> None:
    """Make IPython print, without a traceback, a :class:`RefusedToStart` as one line and
    bluesky's ``RunEngineInterrupted`` (a pause: one Ctrl-C) as its message, the options
    ``RE.resume()`` / ``RE.abort()`` / ... (IPython would show a traceback into the RunEngine)."""

    def show(shell, etype, value, tb, tb_offset=None):
        print(f"refused: {value}" if isinstance(value, RefusedToStart) else str(value).strip())

    shell.set_custom_exc((RefusedToStart, RunEngineInterrupted), show)


def live_display(RE, terminal, store, data_dir, *, analysis: bool = True,
                 live_plots: bool = False, stack=None, publish_to: str | None = None) -> dict:
    """Subscribe the session's display to ``RE``: bluesky's BestEffortCallback (headings,
    plots when ``live_plots``; its table of raw readings off), the live analysis feeding
    ``store`` (the catalog writer), the fit table and the figure (PNGs in
    ``data_dir/figures``),
    the end-of-run summary; with ``publish_to`` (``[analysis] publish_address``, host:port of a
    bluesky 0MQ proxy) the documents go there for ``ncsynth analysis serve`` instead of being
    analysed here (no fit table or figure in this process). Returns the namespace entries (``bec``, ``analysis``,
    ``fit_table``, ``figure``, ``end_of_run``, and ``fit_feed``: the per-frame fits a steered
    synthesis decides from, None unless analysed here); ``stack`` (an ExitStack) gets their closing."""
    from bluesky.callbacks.best_effort import BestEffortCallback

    from ncsynth.analysis.display import LiveFigure

    bec = BestEffortCallback()
    bec.disable_table()
    if not live_plots:
        bec.disable_plots()
    RE.subscribe(bec)
    table, figure, live = FitTable(terminal), LiveFigure(Path(data_dir) / "figures", every=FIGURE_EVERY), None
    feed = None
    if analysis and publish_to:
        from ncsynth.analysis_service import PublishedAnalysis

        live = PublishedAnalysis(publish_to)
        live.mark(RE)
        RE.subscribe(live)
        if stack is not None:
            stack.callback(live.close)
    elif analysis:
        from ncsynth.steering_feed import FitFeed

        feed = FitFeed()  # steered_synthesis waits on these fits (session.session_steering)

        def emit(name, doc):
            store(name, doc)
            feed(name, doc)
            table(name, doc)
            figure(name, doc)

        live = SessionAnalysis(emit=emit)
        RE.subscribe(live)
        if stack is not None:
            stack.callback(live.close)  # before the store closes: derived runs are stored
    quiet, refusals = FirstOnly(SKIPPED_FRAMES), DropRefusals()
    for name, log_filter in (("ncsynth.plans.stubs", quiet), ("bluesky", refusals)):
        logging.getLogger(name).addFilter(log_filter)
        if stack is not None:
            stack.callback(logging.getLogger(name).removeFilter, log_filter)
    end = EndOfRun(terminal, live, figure if analysis and not publish_to else None, data_dir, quiet)
    RE.subscribe(end)
    return {"bec": bec, "analysis": live, "fit_table": table, "figure": figure, "end_of_run": end,
            "fit_feed": feed}
