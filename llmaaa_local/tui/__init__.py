"""The Textual app (`llmaaa-local tui`), installed as llmaaa_local.tui; a client of the library's public API."""
