"""Storage of bluesky runs: the embedded catalog, journal, recovery."""
