"""One module per external program; each checks its program's presence and version."""
