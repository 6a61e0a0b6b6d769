"""silo.runtime.flags: runc's (urfave/cli) command-line habits, checked on a flag set shaped like
``exec``'s and on the global flags."""

from __future__ import annotations

import pytest

from silo.errors import InvalidArgument
from silo.runtime import flags
from silo.runtime.flags import BOOL, INT, MULTI, STR, Flag

pytestmark = pytest.mark.unit

FLAGS = [
    Flag("console-socket", STR, default=""),
    Flag("cwd", STR, default=""),
    Flag("env", MULTI, short="e"),
    Flag("tty", BOOL, short="t"),
    Flag("detach", BOOL, short="d"),
    Flag("user", STR, short="u", default=""),
    Flag("preserve-fds", INT, default=0),
    Flag("keep", BOOL, default=True),
]

DEFAULTS = {
    "console_socket": "", "cwd": "", "env": [], "tty": False, "detach": False, "user": "",
    "preserve_fds": 0, "keep": True,
}


def parse(*argv: str) -> tuple[dict[str, object], list[str]]:
    return flags.parse(FLAGS, list(argv), "exec")


def test_no_arguments_gives_the_defaults_with_dashes_as_underscores() -> None:
    assert parse() == (DEFAULTS, [])


def test_multi_default_is_a_fresh_list_per_parse() -> None:
    first, _ = parse("--env", "A=1")
    second, _ = parse()
    assert first["env"] == ["A=1"]
    assert second["env"] == []


@pytest.mark.parametrize("argv", [
    ["--cwd", "/srv"],
    ["--cwd=/srv"],
    ["-cwd", "/srv"],  # urfave accepts one dash before a long name
    ["-cwd=/srv"],
])
def test_string_flag_spellings(argv: list[str]) -> None:
    values, rest = parse(*argv)
    assert values["cwd"] == "/srv"
    assert rest == []


@pytest.mark.parametrize("argv", [["-u", "1000:1000"], ["-u=1000:1000"], ["--user", "1000:1000"]])
def test_short_name(argv: list[str]) -> None:
    assert parse(*argv)[0]["user"] == "1000:1000"


def test_value_may_start_with_a_dash_or_hold_an_equals_sign() -> None:
    values, _ = parse("--cwd", "-weird", "--env=A=B=C", "-e", "--not-a-flag")
    assert values["cwd"] == "-weird"
    assert values["env"] == ["A=B=C", "--not-a-flag"]


def test_empty_inline_value() -> None:
    assert parse("--console-socket=")[0]["console_socket"] == ""


@pytest.mark.parametrize(("argv", "expected"), [
    (["--detach"], True),
    (["-d"], True),
    (["-detach"], True),
    (["--detach=true"], True),
    (["--detach=1"], True),
    (["--detach=false"], False),
    (["--detach=0"], False),
    (["--detach", "--detach=false"], False),
])
def test_booleans(argv: list[str], expected: bool) -> None:
    assert parse(*argv)[0]["detach"] is expected


def test_boolean_does_not_take_the_next_argument() -> None:
    values, rest = parse("--detach", "false")
    assert values["detach"] is True
    assert rest == ["false"]


def test_boolean_defaulting_to_true_can_be_turned_off() -> None:
    assert parse()[0]["keep"] is True
    assert parse("--keep=false")[0]["keep"] is False


@pytest.mark.parametrize("bad", ["yes", "", "2", "on"])
def test_bad_boolean_names_the_flag_and_value(bad: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse(f"--detach={bad}")
    assert exc.value.field == "--detach"
    assert str(exc.value).endswith(f"--detach: {bad!r} is not a boolean")


@pytest.mark.parametrize(("argv", "expected"), [
    (["--preserve-fds", "3"], 3),
    (["--preserve-fds=3"], 3),
    (["--preserve-fds", "-1"], -1),
])
def test_int(argv: list[str], expected: int) -> None:
    assert parse(*argv)[0]["preserve_fds"] == expected


@pytest.mark.parametrize("bad", ["three", "", "1.5", "0x10"])
def test_int_parse_error_names_the_flag(bad: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse(f"--preserve-fds={bad}")
    assert exc.value.field == "--preserve-fds"
    assert str(exc.value).endswith(f"--preserve-fds: {bad!r} is not an integer")


def test_multi_keeps_every_value_in_order() -> None:
    values, _ = parse("--env", "A=1", "-e", "B=2", "--env=C=3", "-e=D=4")
    assert values["env"] == ["A=1", "B=2", "C=3", "D=4"]


def test_a_repeated_single_value_flag_keeps_the_last() -> None:
    assert parse("--cwd", "/a", "--cwd", "/b")[0]["cwd"] == "/b"


def test_double_dash_ends_flags() -> None:
    values, rest = parse("--detach", "--", "--tty", "-e", "X=1")
    assert values["detach"] is True
    assert values["tty"] is False
    assert values["env"] == []
    assert rest == ["--tty", "-e", "X=1"]


def test_double_dash_after_a_flag_that_needs_a_value_is_the_value() -> None:
    values, rest = parse("--cwd", "--", "ID")
    assert values["cwd"] == "--"
    assert rest == ["ID"]


def test_first_positional_stops_parsing() -> None:
    # exec ID sh -c x: -c and everything after the id belong to the command.
    values, rest = parse("-t", "ID", "sh", "-c", "x", "--detach")
    assert values["tty"] is True
    assert values["detach"] is False
    assert rest == ["ID", "sh", "-c", "x", "--detach"]


def test_lone_dash_is_a_positional() -> None:
    assert parse("-", "--tty") == (DEFAULTS, ["-", "--tty"])


@pytest.mark.parametrize(("argv", "name"), [
    (["--nope"], "--nope"),
    (["--nope=1"], "--nope"),
    (["-x"], "-x"),
    (["--detach", "--TTY"], "--TTY"),
    (["---tty"], "---tty"),
])
def test_unknown_flag_error_names_the_flag(argv: list[str], name: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse(*argv)
    assert exc.value.field == name
    assert str(exc.value).endswith(f"flag provided but not defined: {name}")


@pytest.mark.parametrize(("argv", "name"), [
    (["--cwd"], "--cwd"),
    (["--detach", "-e"], "-e"),
    (["--preserve-fds"], "--preserve-fds"),
])
def test_missing_value_error_names_the_flag(argv: list[str], name: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse(*argv)
    assert exc.value.field == name
    assert str(exc.value).endswith(f"flag needs an argument: {name}")


def test_global_flags_then_verb() -> None:
    from silo.runtime.main import GLOBAL_FLAGS

    values, rest = flags.parse(GLOBAL_FLAGS, ["--root", "/r", "--log-format=json", "--debug",
                                              "kill", "ID", "-9"], "silo-runtime")
    assert values["root"] == "/r"
    assert values["log_format"] == "json"
    assert values["debug"] is True
    assert values["systemd_cgroup"] is False
    assert rest == ["kill", "ID", "-9"]


def test_usage_lists_each_flag_with_its_short_name() -> None:
    text = flags.usage([Flag("env", MULTI, short="e", help="set a variable"),
                        Flag("tty", BOOL, help="a tty")])
    assert text.splitlines() == ["   --env, -e value\tset a variable", "   --tty\ta tty"]
