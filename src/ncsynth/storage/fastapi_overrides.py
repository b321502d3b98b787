"""Tiled's dependency override of its settings, put into the app's routes once.

Tiled's ``build_app`` overrides ``tiled.server.settings.get_settings`` (the app's settings:
API key, anonymous access, limits) through ``app.dependency_overrides``. While that dict is
not empty, FastAPI (0.165, fastapi/fastapi#14441, #16342) rebuilds the dependency tree of every
request from the endpoints' signatures (``get_dependant`` on every sub-dependency): measured
in the catalog writer, about a sixth of the Tiled app's CPU per request (issue 18).

:func:`apply_settings_override` swaps the override into the routes' dependants themselves
(the call FastAPI would have substituted on each request) and leaves the dict in place for
Tiled's startup, shutdown and client context, which look ``get_settings`` up in it, but
empty to FastAPI's per-request test. An app that overrides anything else is left as it is.
"""

from __future__ import annotations


class _AppliedOverrides(dict):
    """The app's overrides, already in its routes: still looked up by key, false to FastAPI's
    ``if dependency_overrides:`` so that it does not rebuild every request's dependencies."""

    def __bool__(self) -> bool:
        return False


def apply_settings_override(app) -> bool:
    """Put ``app``'s override of Tiled's ``get_settings`` into every route's dependants; True
    if done, False (the app untouched) if it overrides anything else or nothing."""
    from tiled.server.settings import get_settings

    overrides = app.dependency_overrides
    if isinstance(overrides, _AppliedOverrides):
        return True
    if set(overrides) != {get_settings}:
        return False
    replacement = overrides[get_settings]
    seen: set[int] = set()

    def swap(dependant) -> None:
        if id(dependant) in seen:
            return
        seen.add(id(dependant))
        if dependant.call is get_settings:
            dependant.call = replacement
        for sub in dependant.dependencies:
            swap(sub)

    for route in app.router.routes:
        dependant = getattr(route, "dependant", None)
        if dependant is not None:
            swap(dependant)
    app.dependency_overrides = _AppliedOverrides(overrides)
    return True
