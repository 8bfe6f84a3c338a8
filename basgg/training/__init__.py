"""Training: the plain loop, checkpoints, feature cache, schedules and multi-process support.

Import the pieces from their modules (``basgg.training.loop``, ``.checkpoint``, ...); the
``basgg train`` and ``basgg test`` commands put them together.
"""
