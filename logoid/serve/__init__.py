"""``logoid serve``: a warm HTTP API and web page over one home, and the client ``--server`` uses.

- :mod:`logoid.serve.service` — the home kept warm: models and index loaded once, per-thread catalog snapshots,
  changes picked up between requests;
- :mod:`logoid.serve.app` — the FastAPI app: ``/v1`` JSON API, ``/`` the web page (``static/``), ``/docs``;
- :mod:`logoid.serve.client` — ``logoid query/batch --server URL``: the same answers from a running server.

Nothing here is imported by ``import logoid``; FastAPI and uvicorn come with the ``server`` extra.
"""
