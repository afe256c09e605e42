"""A wrong Spark master fails at once, naming the URL, instead of Spark's minute of retries and a stack
trace without the address. No cluster needed: nothing listens on a just-freed loopback port."""
from __future__ import annotations

import socket

import pytest

from echelon.spark import SparkMasterError, check_master, get_spark


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_standalone_master_fails_fast_with_the_url(monkeypatch):
    url = f"spark://127.0.0.1:{unused_port()}"
    with pytest.raises(SparkMasterError, match=f"no Spark master answers at {url} .*refused"):
        get_spark("wrong-master", master=url)
    monkeypatch.setenv("SPARK_MASTER", url)   # the same through the setting every job reads
    with pytest.raises(SparkMasterError, match=url):
        get_spark("wrong-master")


def test_any_answering_master_of_an_ha_list_is_enough():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        check_master(f"spark://127.0.0.1:{unused_port()},127.0.0.1:{port}")   # does not raise


@pytest.mark.parametrize("url", ["spark://127.0.0.1", "sprak://127.0.0.1:7077", "local[two]", ""])
def test_malformed_master_urls_are_named(url):
    with pytest.raises(SparkMasterError) as raised:
        check_master(url)
    assert repr(url) in str(raised.value)


@pytest.mark.parametrize("url", ["local", "local[*]", "local[2]", "local[2,3]", "yarn", "k8s://https://10.0.0.1:6443"])
def test_other_masters_are_left_to_spark(url):
    check_master(url)   # nothing to probe, no error
