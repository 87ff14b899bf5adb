"""Procedural music synthesis for the built-in dataset (see :mod:`mgr.data.sources.synthetic`).

``dsp``: instruments and effects; ``styles``: genre templates -> song plans; ``render``: plans ->
audio plus the tags that were actually rendered.
"""
