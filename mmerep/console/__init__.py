"""The web console: environments, their pods and history, actions and live plots in a
browser, acting with the user's own kubeconfig identity.

- ``live``: the watches (one set per namespace, shared by every browser) and the
  executors' short history
- ``views``: the pages as HTML (pure functions of plain data)
- ``app``: the Starlette app: routes, token, CSRF, Content-Security-Policy, actions
- ``serve``: run it on uvicorn, bound to 127.0.0.1 by default

This package never imports typer or rich; ``mme-rep console`` only starts ``serve``.
"""

from mmerep.console.app import Console, create_app
from mmerep.console.server import serve, start_in_thread

__all__ = ["Console", "create_app", "serve", "start_in_thread"]
