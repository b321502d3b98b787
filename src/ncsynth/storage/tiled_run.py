"""The run normalizer the catalog writer commits through (imports bluesky-tiled-plugins)."""

from __future__ import annotations

from bluesky_tiled_plugins.writing.tiled_writer import RunNormalizer


class CommittingNormalizer(RunNormalizer):
    """The RunNormalizer of one run that also knows the run writer it feeds, so the
    events and stream datums that writer holds back for a batch can be committed now."""

    run_writer = None

    def subscribe(self, func, name="all"):
        self.run_writer = func
        return super().subscribe(func, name)

    def commit(self) -> None:
        writer = self.run_writer
        for stream_name, rows in writer._internal_data_cache.items():
            if rows:
                writer._write_internal_data(rows, desc_node=writer._desc_nodes[stream_name])
                rows.clear()
        for stream_resource_uid in list(writer._external_data_cache):
            writer._write_external_data(writer._external_data_cache.pop(stream_resource_uid))
