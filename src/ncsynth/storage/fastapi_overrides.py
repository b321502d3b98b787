"""Tiled's dependency override of its settings, made redundant before FastAPI sees it.

Tiled's ``build_app`` overrides ``tiled.server.settings.get_settings`` through
``app.dependency_overrides``. While that dict is not empty, FastAPI (0.165,
fastapi/fastapi#14441, #16342) rebuilds the dependency tree of every request from the
endpoints' signatures (``get_dependant`` on every sub-dependency): about a sixth of the
in-process Tiled app's CPU per request in the catalog writer (issue 18).

The override is redundant once it has run: Tiled's ``override_get_settings`` (cached) sets the
app's values (API key, anonymous access, limits) on the object ``get_settings()`` returns
(cached too) and returns that same object, and Tiled's own startup calls it. So FastAPI's plain
``get_settings()`` then gives every request the very object the override would.
:func:`skip_redundant_settings_override` calls it, checks that identity (not assumed: a Tiled
whose override returns a copy keeps its override), and leaves the dict in place for Tiled's
startup, shutdown and client context, which look ``get_settings`` up in it, but false to
FastAPI's per-request test.
"""

from __future__ import annotations


class _RedundantOverrides(dict):
    """The app's overrides, each returning what the overridden call returns: still looked up
    by key, false to FastAPI's ``if dependency_overrides:``, so it does not rebuild every
    request's dependencies to apply them."""

    def __bool__(self) -> bool:
        return False


def skip_redundant_settings_override(app) -> bool:
    """Run ``app``'s override of Tiled's ``get_settings`` now and, if it returns the very
    object ``get_settings()`` does, keep FastAPI from applying it per request; True if done,
    False (the app untouched) if the app overrides anything else or the objects differ."""
    from tiled.server.settings import get_settings

    overrides = app.dependency_overrides
    if isinstance(overrides, _RedundantOverrides):
        return True
    if set(overrides) != {get_settings} or overrides[get_settings]() is not get_settings():
        return False
    app.dependency_overrides = _RedundantOverrides(overrides)
    return True
