"""silo.kernel.signals.parse: the spellings ``kill`` accepts, checked against the ``signal``
module (which the runtime itself must not import)."""

from __future__ import annotations

import signal

import pytest

from silo.errors import InvalidArgument
from silo.kernel import signals

pytestmark = pytest.mark.unit

RTMIN = int(signal.SIGRTMIN)
RTMAX = int(signal.SIGRTMAX)


@pytest.mark.parametrize(("text", "expected"), [
    ("15", 15),
    ("9", 9),
    ("1", 1),
    (" 15 ", 15),
    (str(RTMAX), RTMAX),
    ("TERM", signal.SIGTERM),
    ("SIGTERM", signal.SIGTERM),
    ("sigkill", signal.SIGKILL),
    ("kill", signal.SIGKILL),
    ("Hup", signal.SIGHUP),
    ("USR1", signal.SIGUSR1),
    ("SIGCHLD", signal.SIGCHLD),
    ("WINCH", signal.SIGWINCH),
    ("SIGIOT", signal.SIGABRT),
    ("RTMIN", RTMIN),
    ("SIGRTMIN", RTMIN),
    ("RTMIN+0", RTMIN),
    ("RTMIN+3", RTMIN + 3),
    ("sigrtmin+3", RTMIN + 3),
    (f"RTMIN+{RTMAX - RTMIN}", RTMAX),
    ("RTMAX", RTMAX),
    ("RTMAX-1", RTMAX - 1),
    (f"SIGRTMAX-{RTMAX - RTMIN}", RTMIN),
])
def test_parse(text: str, expected: int) -> None:
    assert signals.parse(text) == int(expected)


def test_every_named_signal_of_the_signal_module_parses() -> None:
    names = [n for n in dir(signal)
             if n.startswith("SIG") and not n.startswith("SIG_") and n not in ("SIGRTMIN",
                                                                              "SIGRTMAX")]
    assert names
    for name in names:
        assert signals.parse(name) == int(getattr(signal, name)), name
        assert signals.parse(name[3:].lower()) == int(getattr(signal, name)), name


def test_constants_match_the_signal_module() -> None:
    assert signals.SIGRTMIN == RTMIN
    assert signals.SIGRTMAX == RTMAX
    assert (signals.SIGKILL, signals.SIGTERM, signals.SIGCONT, signals.SIGCHLD,
            signals.SIGWINCH) == (signal.SIGKILL, signal.SIGTERM, signal.SIGCONT,
                                  signal.SIGCHLD, signal.SIGWINCH)


@pytest.mark.parametrize("text", [
    "0",
    "99",
    str(RTMAX + 1),
    "-9",
    "",
    "SIG",
    "SIGFOO",
    "FOO",
    "SIG_IGN",
    "TERM+1",
    "RTMIN+99",
    f"RTMIN+{RTMAX - RTMIN + 1}",
    "RTMIN-1",
    "RTMAX+1",
    "RTMAX-99",
    "RTMIN+",
    "RTMIN+x",
    "RTMIN+-1",
    "1.5",
])
def test_bad_signals_are_invalid_arguments(text: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        signals.parse(text)
    assert exc.value.field == "signal"
    assert repr(text) in str(exc.value)


@pytest.mark.parametrize("text", ["\u00b2", "RTMIN+\u00b2"])
def test_non_ascii_digits_are_invalid_arguments(text: str) -> None:
    with pytest.raises(InvalidArgument):
        signals.parse(text)
