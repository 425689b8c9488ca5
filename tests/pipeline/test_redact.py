"""Credentials never survive redact() / strip_credentials(), however the user wrote them."""

import pytest

from pipeline.redact import redact, strip_credentials

# (url as typed, what redact shows, the stream id strip_credentials derives)
CASES = [
    ("rtsp://admin:hunter2@cam1:554/live", "rtsp://admin:***@cam1:554/live", "rtsp://cam1:554/live"),
    # percent-encoded, as URLs want it
    ("rtsp://admin:p%40ss%2Fw@cam1/live", "rtsp://admin:***@cam1/live", "rtsp://cam1/live"),
    # typed raw: "@", "/", ":" and "#" inside the password must not leave a piece of it visible
    ("rtsp://viewer:p@ss:w/rd%?#@127.0.0.1:8554/live", "rtsp://viewer:***@127.0.0.1:8554/live",
     "rtsp://127.0.0.1:8554/live"),
    ("http://me@example.com:pa@ss@cam1/live", "http://me@example.com:***@cam1/live", "http://cam1/live"),
    ("srt://cam2:9000?mode=caller&passphrase=0123456789ab&latency=200",
     "srt://cam2:9000?mode=caller&passphrase=***&latency=200", "srt://cam2:9000?mode=caller&passphrase=***&latency=200"),
    ("rtsp://admin@cam1/live", "rtsp://admin@cam1/live", "rtsp://cam1/live"),
    ("rtsp://cam1:554/live", "rtsp://cam1:554/live", "rtsp://cam1:554/live"),
    # no login, but an "@" after a port: the URL stays whole (it is also the stream id)
    ("rtsp://nvr:554/ch1@main", "rtsp://nvr:554/ch1@main", "rtsp://nvr:554/ch1@main"),
    ("https://cdn.example.com:443/live.m3u8?owner=alice@example.com",
     "https://cdn.example.com:443/live.m3u8?owner=alice@example.com",
     "https://cdn.example.com:443/live.m3u8?owner=alice@example.com"),
    ("rtp://0.0.0.0:5004?localaddr=a@b", "rtp://0.0.0.0:5004?localaddr=a@b", "rtp://0.0.0.0:5004?localaddr=a@b"),
    ("http://[::1]:8080/x@y", "http://[::1]:8080/x@y", "http://[::1]:8080/x@y"),
    ("rtsp://admin:1234@cam1/live", "rtsp://admin:***@cam1/live", "rtsp://cam1/live"),
]


def test_cameras_that_differ_after_an_at_sign_keep_distinct_stream_ids():
    assert strip_credentials("rtsp://nvr:554/ch1@main") != strip_credentials("rtsp://nvr:554/ch2@main")


@pytest.mark.parametrize("url, shown, stream_id", CASES)
def test_url_passwords_are_masked_whole(url, shown, stream_id):
    assert redact(url) == shown
    assert redact(f"cannot open {url}: 401 Unauthorized") == f"cannot open {shown}: 401 Unauthorized"
    assert strip_credentials(url) == stream_id


def test_two_urls_in_one_message_are_both_masked():
    text = "door rtsp://a:pw-one@cam1/live failed, yard rtsp://b:pw-two@cam2/live ok"
    assert redact(text) == "door rtsp://a:***@cam1/live failed, yard rtsp://b:***@cam2/live ok"


def test_print_exc_masks_a_url_password_in_the_traceback(capsys):
    from pipeline.redact import print_exc

    try:
        raise ValueError("cannot open rtsp://admin:hunter2@cam1:554/live")
    except ValueError:
        print_exc()
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "test_redact.py" in err
    assert "rtsp://admin:***@cam1:554/live" in err and "hunter2" not in err


def test_a_masked_logger_redacts_messages_and_logged_tracebacks(caplog):
    import logging

    from pipeline.redact import masked_logger

    log = masked_logger("avgrid.test-redact")
    with caplog.at_level(logging.ERROR, logger="avgrid.test-redact"):
        try:
            raise RuntimeError("rtsp://admin:hunter2@cam1/live went away")
        except RuntimeError:
            log.exception("reading %s failed", "rtsp://admin:hunter2@cam1/live")
    (rec,) = caplog.records
    assert rec.exc_info and "hunter2" not in caplog.text and "RuntimeError" in caplog.text
    assert rec.getMessage() == "reading rtsp://admin:***@cam1/live failed"


def test_guarded_library_loggers_mask_given_secrets_also_in_children_made_before(caplog):
    import logging

    from pipeline.redact import guard_loggers

    child = logging.getLogger("libtest.conn.broker1")      # exists before the guard, like kafka-python's
    guard_loggers("libtest", ["s3cr3t-value"])
    with caplog.at_level(logging.DEBUG, logger="libtest"):
        child.debug("config: {'sasl_plain_password': %r}", "s3cr3t-value")
        logging.getLogger("libtest").debug("auth bytes b'\\x00user\\x00s3cr3t-value'")
    assert len(caplog.records) == 2 and "s3cr3t-value" not in caplog.text and "***" in caplog.text
