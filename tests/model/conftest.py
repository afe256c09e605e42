"""Fixtures shared by the damage model tests of this folder."""
import pytest

from echelon.models.damage import steps


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The session's tiny damage world and model (built once, shared with the quarantine and e2e tests),
    torch on one thread while a module uses it."""
    yield from steps.tiny_one_thread(tmp_path_factory.getbasetemp())
