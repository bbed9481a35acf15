"""Durable activities, one module each, thin over `shared.steps`."""

from . import caption, compose, generate, persist, prepare

BLUEPRINTS = (prepare.bp, caption.bp, compose.bp, generate.bp, persist.bp)
