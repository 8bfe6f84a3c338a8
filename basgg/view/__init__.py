"""``basgg view``: a static, offline results site (index with metrics and an image grid, one
page per image with its boxes, graphs and the fate of every triplet).

- :mod:`basgg.view.dataset`: site data from predictions files and their VG150-format split;
- :mod:`basgg.view.predict_folder`: site data from a ``basgg predict`` output folder;
- :mod:`basgg.view.site`: writes the HTML, the assets (``static/``), data scripts and thumbnails;
- :mod:`basgg.view.serve`: the optional local server (127.0.0.1 only).
"""
