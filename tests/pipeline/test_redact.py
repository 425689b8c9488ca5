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
