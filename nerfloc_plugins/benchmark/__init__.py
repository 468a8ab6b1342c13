"""``ns-nerfloc-benchmark``: scenes x methods x seeds from one spec, resumable, local or on Ray."""
