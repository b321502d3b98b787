"""A run published while no analysis service ran is analysed when one starts, once.

Real components: the ``bluesky-0MQ-proxy`` process, ``ncsynth analysis serve`` processes, the
interactive session (simulated beamline, jumping clock) in this process publishing through
bluesky's Publisher, the embedded catalog on disk.
"""

from ncsynth.analysis_catchup import PUBLISHED_KEY
from ncsynth.storage import open_catalog

from test_analysis_service import (_assert_every_frame_analysed_once_as_in_process, _serve, _stop,
                                   configuration, proxy)  # noqa: F401 (fixtures)


def test_a_run_published_while_no_service_ran_is_analysed_by_the_next_service_once(configuration, proxy):
    """The session publishes a whole run to the proxy with no service subscribed (its documents
    are dropped there); the run's start names the proxy, so the service started afterwards owes
    it an analysis: it analyses the run from its journal (the in-process fits, every frame once),
    and a second service start leaves it alone."""
    from ncsynth.config import load_config
    from ncsynth.plans import Recipe
    from ncsynth.session import session_namespace

    config = load_config(hardware="sim")
    config["data"]["dir"] = str(configuration.parent / "data")
    config["catalog"]["server_url"] = ""
    config["analysis"]["publish_address"] = proxy[0]
    ns = session_namespace(config, sim=True, speed=0, live_plots=False)
    try:
        recipe = Recipe(operator="t", sample="missed", reaction_time_s=8,
                        cd_initial_molar=round(ns["sim"].cd_initial_molar(), 6))
        (uid,) = ns["RE"](ns["hot_injection"](ns["heater"], ns["injector"], ns["detector"], recipe,
                                              n_background=2, timer=ns["timer"],
                                              schedule_s=[0.5 * i for i in range(1, 11)]))
        assert ns["cat"][uid].metadata["start"][PUBLISHED_KEY] == proxy[0]
    finally:
        ns["close"]()
    with open_catalog(configuration.parent / "data") as catalog:
        assert catalog.analysis(uid) is None  # nobody analysed it while it ran

    err = _stop(_serve(configuration))
    assert f"run {uid[:8]} began before this service subscribed; catching it up" in err
    with open_catalog(configuration.parent / "data") as catalog:
        _assert_every_frame_analysed_once_as_in_process(catalog, {"uid": uid, "frames": 10})

    err = _stop(_serve(configuration))
    assert "catching it up" not in err
    with open_catalog(configuration.parent / "data") as catalog:
        assert len(catalog.analyses(uid)) == 2  # the service's and the in-process check's
