"""basgg: scene graph generation with BA-SGG balance adjustment.

``Mode`` and ``SceneGraph`` are loaded on first use, so ``basgg --version`` and the
commands that need no model start without importing torch.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Mode", "SceneGraph", "__version__"]


def __getattr__(name: str) -> object:
    if name in ("Mode", "SceneGraph"):
        from basgg import structures

        return getattr(structures, name)
    raise AttributeError(f"module 'basgg' has no attribute {name!r}")
