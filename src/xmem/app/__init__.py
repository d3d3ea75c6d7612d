"""``xmem annotate``: a local web page to segment and correct objects through a video.

:mod:`xmem.app.annotator` holds a :class:`~xmem.interactive.session.VideoSession` with one background job at
a time (a propagation or an export); :mod:`xmem.app.server` serves it and the page (``static/``) over HTTP
with Starlette and uvicorn, which come with the ``app`` extra (``pip install 'xmem-vos[app]'``).
"""

from xmem.app.annotator import Annotator, Busy, Job, JobKind, JobState

__all__ = ["Annotator", "Busy", "Job", "JobKind", "JobState"]
