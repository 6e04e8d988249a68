"""`mlops ui` / `kubectl mlops ui`: a read-only web view of runs, versions, drift and datasets.

Pure rendering (`markup`, `charts`, `pages`) is separate from the server (`server`), which alone
talks to the API server, so every page can be tested from plain dicts without a cluster.
"""
