"""Operating the worker: Prometheus metrics, the load monitor, the health/status HTTP server and
the `doctor` command. Nothing here decides a job's fate; the app feeds these from what it sees.
"""
