"""MAINTCAST_LOG_FORMAT=json: one JSON object per line with the publish fields."""

from __future__ import annotations

import json
import logging

import pytest

from broadcaster.cli.base import setup_logging


def test_json_logs_carry_the_publish_fields(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("json")
        logging.getLogger("broadcaster.store").info(
            "published seq=%s",
            7,
            extra={
                "seq": 7,
                "cause": "maintenance.started",
                "window_id": "w",
                "state": "maintenance",
            },
        )
        line = capsys.readouterr().err.strip().splitlines()[-1]
        record = json.loads(line)
        assert record["message"] == "published seq=7"
        assert (record["seq"], record["cause"], record["window_id"]) == (
            7,
            "maintenance.started",
            "w",
        )
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
