"""Pipecat pipelines for live avatar sessions: build one session's pipeline, run it to an outcome.

Importable where daily-python is missing; Daily and Tavus classes are imported only when a
session is built (see `pipelines.availability`).
"""
