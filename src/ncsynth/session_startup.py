"""The hutch session as a module: the startup of bluesky-queueserver.

    NCSYNTH_CONFIG=/path/to/hutch.toml start-re-manager \\
        --startup-module ncsynth.session_startup --keep-re --use-ipython-kernel=OFF \\
        --user-group-permissions /path/to/queueserver_permissions.yaml \\
        --existing-plans-devices /path/to/existing_plans_and_devices.yaml

(docs/queueserver.md has the whole recipe.) Importing this module builds
:func:`ncsynth.session.session_namespace` from the configuration file (``NCSYNTH_CONFIG``,
``NCSYNTH_DATA_DIR``: see :mod:`ncsynth.config`) — the file's ``hardware`` chooses hutch or
simulated devices, ``[session] speed`` the simulated clock — and exposes every name of it
(``RE``, ``cat``, the devices, the plans, ``sim``, ``close``) as a module attribute, which is
how the queue server's worker finds ``RE``, the devices and the plans; on the simulated
beamline also the plan ``new_batch`` (a fresh flask and reloaded syringes between two queued
syntheses). Live plots are off (no display in a worker).

The queue server offers as plans the generator functions of the namespace and the callables
marked with bluesky's ``@plan``; the synthesis plans (:data:`SYNTHESIS_PLANS`) validate their
arguments when called, before they return their generator, so they are marked here. The
queue server also checks queued parameters against the plans' type hints, which it cannot
resolve for ``recipe`` (``Recipe | dict``) and ``timer`` (``DeadlineTimer | None``) and which
the device parameters lack: :data:`QUEUE_ANNOTATIONS` states them in its terms. Queued items
name the devices by their names in this namespace (``"heater"``, ``"injector"``,
``"detector"``, ``"timer"``) and give the recipe in its dict form
(:meth:`~ncsynth.plans.Recipe.to_metadata`).

``close()`` runs when the process exits: also when it is the queue server's worker, a
``multiprocessing`` child that leaves through ``os._exit`` (no ``atexit``), so it is
registered as a ``multiprocessing`` finaliser, which such a child runs on its way out and an
ordinary process at exit.
"""

from __future__ import annotations

from multiprocessing.util import Finalize

import bluesky.plan_stubs as _bps
from bluesky.utils import plan as _mark_as_plan
from bluesky_queueserver import parameter_annotation_decorator as _queue_annotations

from ncsynth.config import load_config
from ncsynth.session import session_namespace

#: The plans that are functions returning a generator, all with the parameters below.
SYNTHESIS_PLANS = ("hot_injection", "double_injection")
#: Their parameter annotations for the queue server: each device parameter
#: accepts only the name of its device in this namespace (anything else is refused when the
#: item is queued); the recipe is a dict.
QUEUE_ANNOTATIONS = {"parameters": {
    "heater": {"annotation": "Heater", "devices": {"Heater": ["heater"]}},
    "injector": {"annotation": "Injector", "devices": {"Injector": ["injector"]}},
    "detector": {"annotation": "Detector", "devices": {"Detector": ["detector"]}},
    "timer": {"annotation": "typing.Optional[Timer]", "devices": {"Timer": ["timer"]}},
    "recipe": {"annotation": "dict"},
}}

_namespace = session_namespace(load_config(), live_plots=False)
for _name in SYNTHESIS_PLANS:
    _namespace[_name] = _mark_as_plan(_queue_annotations(QUEUE_ANNOTATIONS)(_namespace[_name]))
if _namespace["sim"] is not None:
    def new_batch():
        """Simulated beamline: reload the syringes and refill the flask, the operator's work
        between two syntheses at the hutch, so that queued syntheses can follow one another
        (:mod:`ncsynth.run_agent` queues it before each)."""
        _namespace["sim"].new_batch()
        yield from _bps.null()

    _namespace["new_batch"] = new_batch
globals().update(_namespace)
Finalize(None, _namespace["close"], exitpriority=10)
