"""Log lines never carry a URL's key: every line the process writes (its own and other
libraries', tracebacks included) goes through the URL mask of `nespay.kit.urls`."""

import logging

import structlog

from nespay.logging import configure_logging

KEY = "SECRETKEY123456789"
URL = f"https://eth-mainnet.g.alchemy.com/v2/{KEY}?apikey={KEY}"


def written(records) -> str:
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_nespay", False))
    return "\n".join(handler.formatter.format(record) for record in records)


def test_our_lines_other_libraries_lines_and_tracebacks_show_urls_without_their_key(
    settings, caplog
):
    configure_logging(settings.model_copy(update={"log_level": "info"}), "jobs")
    with caplog.at_level(logging.INFO):
        structlog.get_logger("nespay.test").warning("rpc_call_failed", url=URL, detail=f"at {URL}")
        logging.getLogger("some.library").warning("HTTP Request: POST %s 500", URL)
        try:
            raise RuntimeError(f"node refused {URL}")
        except RuntimeError:
            structlog.get_logger("nespay.test").exception("crashed")
            logging.getLogger("some.library").exception("crashed too")
    lines = written(caplog.records)
    assert lines.count("https://eth-mainnet.g.alchemy.com/v2/***?apikey=***") >= 5, lines
    assert "node refused" in lines and "Traceback" in lines
    assert KEY not in lines
