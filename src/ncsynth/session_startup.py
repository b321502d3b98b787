"""The hutch session as a module: the startup of bluesky-queueserver.

    NCSYNTH_CONFIG=/path/to/hutch.toml start-re-manager \\
        --startup-module ncsynth.session_startup --keep-re

Importing this module builds :func:`ncsynth.session.session_namespace` from the
configuration file (``NCSYNTH_CONFIG``, ``NCSYNTH_DATA_DIR``: see :mod:`ncsynth.config`) —
the file's ``hardware`` chooses hutch or simulated devices — and exposes every name of it
(``RE``, ``cat``, the devices, the plans, ``sim``, ``close``) as a module attribute, which is
how the queue server's worker finds ``RE``, the devices and the plans. ``close()`` also runs
when the process exits. Live plots are off (no display in a worker).
"""

from __future__ import annotations

import atexit

from ncsynth.config import load_config
from ncsynth.session import session_namespace

_namespace = session_namespace(load_config(), live_plots=False)
globals().update(_namespace)
atexit.register(_namespace["close"])
