"""The auxiliary diagnosis application (paper 000's "integrated medical image
auxiliary diagnosis system"): a FastAPI web interface and REST API over a case
database, running medattn's pipelines (segment, denoise, enhance, chains) in a
bounded background worker.

Start it with ``medattn serve``; create the first account with
``medattn users create --admin NAME``.
"""
