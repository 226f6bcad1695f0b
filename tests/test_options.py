"""The one option table: the command line and ``put()`` are made from it and agree."""

from __future__ import annotations

import dataclasses

import pytest
from configs import from_argv, from_keywords

from s3pput import cli, options
from s3pput.errors import UsageError
from s3pput.filters import EXCLUDE, INCLUDE, Rule


def test_put_and_the_command_line_with_no_options_build_equal_configurations(tmp_path):
    by_cli = from_argv(["--bucket", "bkt", tmp_path], cwd=tmp_path)
    by_put = make_put_config(tmp_path)
    assert by_cli == by_put
    # and they are the table's defaults, not values written anywhere else
    assert by_cli.processes == options.CPU_COUNT
    assert by_cli.retries == options.BY_NAME["retries"].default
    assert by_cli.max_inflight == options.BY_NAME["max_inflight"].default
    assert by_cli.part_size == options.BY_NAME["part_size"].default * 1024 * 1024


def make_put_config(tmp_path, **keywords):
    # from_keywords turns the journal off unless asked; the command line above keeps the
    # default journal, so ask put() for the same one here.
    return from_keywords([tmp_path], cwd=tmp_path, bucket="bkt", **keywords,
                         state=None, no_state=False)


def test_every_option_is_given_the_same_way_by_both(tmp_path):
    argv = ["--bucket", "bkt", "--prefix", "p", "--put", "add", "--limit", "3",
            "--exclude", "*", "--include", "*.jpg", "--gzip", "--gzip-type", "text/css",
            "--header", "Cache-Control: no-cache", "--processes", "3", "--inflight", "7",
            "--retries", "2", "--timeout", "9.5", "--no-state", "-v", "-v", "--json",
            "--part-size", "16", tmp_path]
    keywords = dict(bucket="bkt", prefix="p", put="add", limit=3,
                    rules=[(EXCLUDE, "*"), (INCLUDE, "*.jpg")], gzip=True,
                    gzip_type="text/css", header=["Cache-Control: no-cache"], processes="3",
                    inflight=7, retries=2, timeout="9.5", no_state=True, verbose=2,
                    json=True, part_size=16)
    by_cli = from_argv(argv, cwd=tmp_path)
    assert by_cli == from_keywords([tmp_path], cwd=tmp_path, **keywords)
    assert by_cli.rules == (Rule(EXCLUDE, "*"), Rule(INCLUDE, "*.jpg"))
    assert (by_cli.processes, by_cli.timeout, by_cli.verbose) == (3, 9.5, 2)


def test_the_command_line_has_every_option_of_the_table_and_no_other():
    parser = cli.build_parser()
    flags = {flag for action in parser._actions for flag in action.option_strings}
    table = {flag for option in options.OPTIONS for flag in option.flags}
    assert flags - {"-h", "--help", "--version"} == table


def test_help_states_defaults_and_environment_names_from_the_table():
    text = " ".join(cli.build_parser().format_help().split())
    assert "(default 256)" in text  # --max-inflight
    assert "(default CPU count)" in text  # --processes
    assert "(env S3PPUT_BUCKET or SPACES_BUCKET)" in text


@pytest.mark.parametrize("keywords, error, message", [
    (dict(procesess=2), TypeError, "procesess"),
    (dict(put="sometimes"), UsageError, "use one of 'add', 'stupid', 'update'"),
    (dict(limit="many"), UsageError, "not a valid whole number"),
    (dict(include="*.jpg", exclude="*.tmp"), UsageError, "their order decides"),
    (dict(rules=[("keep", "*")]), UsageError, "neither"),
])
def test_put_keywords_are_checked_like_the_command_line(tmp_path, keywords, error, message):
    with pytest.raises(error, match=message):
        from_keywords([tmp_path], bucket="bkt", **keywords)


def test_the_configuration_has_no_defaults_of_its_own():
    """Every field comes from the table through make_config: a Config built by hand would
    be a set-up no user gets."""
    from s3pput.config import Config

    missing = [f.name for f in dataclasses.fields(Config)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    assert len(missing) == len(dataclasses.fields(Config))
