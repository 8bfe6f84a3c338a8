"""basgg: scene graph generation with BA-SGG balance adjustment."""

from basgg.structures import Mode, SceneGraph

__version__ = "0.1.0"
__all__ = ["Mode", "SceneGraph", "__version__"]
