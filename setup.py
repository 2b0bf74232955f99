"""Packaging for labscope; metadata lives in pyproject.toml.

The wire contract's Python code (messages/labscope_pb2.py and .pyi) is
generated from messages/labscope.proto with grpcio-tools and committed;
tests/test_messages.py fails when it is stale. Regenerate with
``make proto`` (python messages/generate.py).
"""

from setuptools import setup

setup()
