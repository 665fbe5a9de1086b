"""Maintcast's own pages: the routes (:mod:`broadcaster.pages.routes`), their jinja2
``templates/`` and the ``static/`` files (``maintcast.js``, ``pages.js``, the stylesheet)."""
