"""oversight: scalable-oversight protocols as graphs of model calls, judged by weak models and humans.

The notebook API, imported on first use (the kernel never imports the application at import time):
    oversight.run(overrides=[...])                 one job, composed from the same conf/ as the CLI
    await oversight.run_async(overrides=[...])     the same inside a running event loop (Jupyter)
    oversight.load(directory)                      a pandas DataFrame, one row per judgment
"""

_API = ("run", "run_async", "load")


def __getattr__(name: str):
    if name in _API:
        from oversight.app import api

        return getattr(api, name)
    raise AttributeError(f"module 'oversight' has no attribute {name!r}")
