"""Durable activities, one module each, thin over `shared.core.steps`.

Parameter annotations here are read by the Python worker when it indexes the app, and it accepts
only classes and the typing generics it knows: `dict[str, Any]` makes it refuse the function, and
a refused function stops the host from loading any function at all. Plain `dict` passes. The
host-contract suite (tests/worker) indexes the app with the real worker to keep it so.
"""

from . import caption, compose, generate, persist, prepare, reserve

BLUEPRINTS = (prepare.bp, caption.bp, compose.bp, reserve.bp, generate.bp, persist.bp)
