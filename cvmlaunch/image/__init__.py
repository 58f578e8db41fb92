"""Image loaders: bytes -> typed images -> regions.

Rule: loaders take buffers (bytes or memoryview), never paths, and raise only
:class:`~cvmlaunch.errors.ImageError` subclasses on bad input.
"""
