"""The record summary line says how the command ended (exit status or signal), like a shell."""


def test_record_summary_says_how_the_command_ended():
    from mmtrace.capture.recorder import _exit_reason

    assert _exit_reason(0) == "command exited"
    assert _exit_reason(7) == "command exited with status 7"
    assert _exit_reason(-11) == "command killed by SIGSEGV"
    assert _exit_reason(-200) == "command killed by signal 200"
