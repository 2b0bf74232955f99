"""Packaging for labscope; metadata lives in pyproject.toml.

The wire contract's Python code (messages/labscope_pb2.py and .pyi) is
generated from messages/labscope.proto with grpcio-tools and committed;
tests/test_messages.py fails when it is stale. Regenerate with
``make proto`` (python messages/generate.py).

``collector._drain`` is the ingest drain's receive loop in C
(collector/fast_drain.py). It needs a C compiler and Python's headers and
links against nothing else; where it cannot be built the install goes on and
the collector uses the same loop in Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("collector._drain", sources=["collector/_drain.c"], optional=True),
    ],
)
