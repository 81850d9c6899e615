import logging

import pytest

from throughput_lab import SettingError
from throughput_lab.app_settings import (
    check_processes,
    check_threads_flag,
    effective_threads,
    processes_from_setting,
    python_default_threads,
    thread_count_from_setting,
)


def test_thread_setting_absent_is_pythons_default():
    assert thread_count_from_setting(None) is None
    assert effective_threads(None) == python_default_threads()


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1.5"])
def test_invalid_thread_setting_warns_and_falls_back(value, caplog):
    with caplog.at_level(logging.WARNING, logger="throughput_lab"):
        assert thread_count_from_setting(value) is None
    assert "PYTHON_THREADPOOL_THREAD_COUNT" in caplog.text


def test_valid_thread_setting():
    assert thread_count_from_setting("16") == 16
    assert thread_count_from_setting("1000") == 1000


@pytest.mark.parametrize("bad", [0, -1, 11, 2.5, True])
def test_process_flag_outside_host_limit_is_an_error(bad):
    with pytest.raises(SettingError, match="1-10"):
        check_processes(bad)


def test_process_setting_read_like_the_host():
    assert processes_from_setting(None) == 1
    assert processes_from_setting("0") == 1  # below 1 becomes 1
    assert processes_from_setting("4") == 4
    with pytest.raises(SettingError):
        processes_from_setting("11")
    with pytest.raises(SettingError):
        processes_from_setting("many")


@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_thread_flag_below_one_is_an_error(bad):
    with pytest.raises(SettingError, match=">= 1"):
        check_threads_flag(bad)


def test_python_default_matches_thread_pool_executor():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor() as pool:
        assert pool._max_workers == python_default_threads()
