"""seachat's user-facing half: command line, terminal chat app, runtime and model library."""
