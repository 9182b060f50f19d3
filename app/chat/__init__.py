"""One conversation, end to end below the UI: session, llama.cpp runtime, chat template,
SQLite store and exports.
"""
