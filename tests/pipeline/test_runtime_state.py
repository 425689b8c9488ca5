"""A stream's liveness as the status lines and the live page show it, walked with a fake clock."""

from pipeline.runtime.state import InputResult, InputSpec, StreamRun


def test_liveness_follows_what_the_source_reports_and_when_media_last_came():
    run = StreamRun(InputSpec(url="udp://127.0.0.1:1234"), None, InputResult(input="cam"))
    t0 = run.started
    assert run.liveness(t0 + 1.0) == "connecting"              # opening, nothing yet
    assert run.liveness(t0 + 6.0) == "connecting"              # still opening: the source says so
    run.source_state = "reading"
    assert run.liveness(t0 + 6.0, stall_s=5.0) == "stalled"    # open, but no media for 6 s
    run.last_media_at = t0 + 7.0
    assert run.liveness(t0 + 8.0) == "running" and run.no_media_s(t0 + 8.0) == 1.0
    assert run.liveness(t0 + 12.5, stall_s=5.0) == "stalled" and run.no_media_s(t0 + 12.5) == 5.5
    run.source_state = "reconnecting"
    assert run.liveness(t0 + 13.0) == "reconnecting"
    run.source_state, run.last_media_at = "reading", t0 + 20.0
    assert run.liveness(t0 + 20.5) == "running"
    run.finished = True
    assert run.liveness(t0 + 21.0) == "finished"
