"""SynthVG: the synthetic scene-graph dataset producer (``basgg data synth``, ``basgg demo``).

Import the pieces from their modules: ``basgg.synthvg.generator`` (``generate_dataset``,
``synthesize``), ``basgg.synthvg.settings`` (``SynthSettings``, ``load_settings``; a leaf).
"""
