"""``ncsynth session --sim --fast`` in a test: the session namespace with the jumping clock,
its data in the test's temporary directory, what its terminal prints captured."""

from __future__ import annotations

import contextlib
import io

from ncsynth.config import load_config
from ncsynth.session import session_namespace


@contextlib.contextmanager
def fast_session(tmp_path):
    """Yield the namespace of a simulated session (jumping clock, no live plots, embedded
    catalog in ``tmp_path/data``) and a StringIO holding what its terminal printed (the fit
    table, the status line, the end-of-run summaries); the session is closed after."""
    config = load_config(hardware="sim")
    config["data"]["dir"] = str(tmp_path / "data")
    config["catalog"]["server_url"] = ""
    ns = session_namespace(config, sim=True, speed=0, live_plots=False)
    shown = io.StringIO()
    ns["progress"].terminal.file = shown
    try:
        yield ns, shown
    finally:
        ns["close"]()
