"""`mirage explore`: walk through a persistent generated world in the browser (docs/design.md
§3.10). A FastAPI app (:func:`create_app`) serves a static page of ES modules and one
WebSocket per tab; each tab drives its own generation session, one worker thread steps them
in fair turns (:mod:`mirage.explore.manager`).

FastAPI and uvicorn come with ``pip install 'mirage-world[explore]'``; importing this package
imports neither (``import mirage.explore.app`` does).
"""
