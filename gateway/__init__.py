"""genpool's HTTP and WebSocket gateway: any language submits jobs, and chat answers stream to a browser.

An ASGI app (FastAPI on uvicorn, ``genpool api``) in front of the same queues as the Python API. It
enqueues through ``genpool.producer`` and relays the jobs' event streams (``genpool.shared.events``); it
never calls Gemini and never needs the Gemini key. See docs/gateway.md.
"""
