"""The optional C accelerator; everything else about the package is in pyproject.toml.

``cvmlaunch._pagehash`` hashes whole 4 KiB pages in batches with the GIL released. It needs
only a C compiler and the Python headers (no OpenSSL headers: it uses the libcrypto that
Python's ``_hashlib`` loads). It is optional: without a compiler the install still succeeds
and cvmlaunch hashes page by page with hashlib.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "cvmlaunch._pagehash",
            sources=["cvmlaunch/_pagehash.c"],
            optional=True,
        )
    ]
)
