"""Distributed mode: ``nkwatch worker``, ``nkwatch writer``, ``nkwatch enqueue``, ``nkwatch queue``.

Each needs a broker (``--broker redis://...`` or ``NKWATCH_BROKER``); ``redis`` and ``rq`` are
imported only once a command runs, so the rest of nkwatch works without them installed.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import click


def _broker_option(function):
    return click.option("--broker", envvar="NKWATCH_BROKER", required=True, metavar="URL",
                        help="Redis URL (redis://HOST:PORT/DB); also NKWATCH_BROKER.")(function)  # fmt: skip


def _say(message: str) -> None:
    click.echo(message, err=True)
    sys.stderr.flush()


def _fail(error: Exception):
    raise click.ClickException(str(error)) from None


@click.command("worker")
@_broker_option
@click.option("--sources", "sources_file", envvar="NKWATCH_SOURCES", default=None,
              type=click.Path(dir_okay=False),
              help="This machine's sources TOML; also NKWATCH_SOURCES. Default ./sources.toml, "
                   "else the shipped list.")  # fmt: skip
@click.option("--name", default=None, help="Worker name (default HOST-PID); unique per worker.")
@click.option("--scratch-dir", type=click.Path(file_okay=False), default=".nkwatch-worker",
              show_default=True, help="Where crawls keep their run rows and learned boilerplate.")  # fmt: skip
@click.option("--abandon-after", type=click.FloatRange(min=3), default=60, show_default=True,
              metavar="SECONDS",
              help="A job whose worker sent no heartbeat this long is retried elsewhere.")  # fmt: skip
@click.option("--set", "crawl_settings", multiple=True, metavar="KEY=VALUE",
              help="A setting for every crawl (repeatable), as `nkwatch crawl --set`.")  # fmt: skip
@click.option("--burst", is_flag=True, help="Exit once the queue is empty.")
def worker(broker: str, sources_file: str | None, name: str | None, scratch_dir: str,
           abandon_after: float, crawl_settings: tuple[str, ...], burst: bool) -> None:  # fmt: skip
    """Run "crawl this source" jobs from the broker, one crawl child process at a time."""
    from schedules.distributed import WorkerConfig, run_worker

    if sources_file and not Path(sources_file).exists():
        raise click.ClickException(f"sources file {sources_file} not found")
    config = WorkerConfig(
        broker=broker,
        sources_file=str(Path(sources_file).resolve()) if sources_file else None,
        scratch_dir=Path(scratch_dir).resolve(),
        name=name or f"{socket.gethostname()}-{os.getpid()}",
        settings=list(crawl_settings),
        abandon_after=abandon_after,
    )
    from schedules.distributed import BrokerError

    try:
        run_worker(config, burst=burst, say=_say)
    except BrokerError as error:
        _fail(error)


@click.command("writer")
@_broker_option
@click.option("--db", envvar="NKWATCH_DB", default="nkwatch.db", show_default=True,
              type=click.Path(dir_okay=False), help="The corpus (SQLite file); also NKWATCH_DB.")  # fmt: skip
@click.option("--batch-size", type=click.IntRange(min=1), default=200, show_default=True,
              help="Records per transaction.")  # fmt: skip
@click.option("--idle-exit", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Exit once nothing arrived for this long (default: run until stopped).")  # fmt: skip
def writer(broker: str, db: str, batch_size: int, idle_exit: float | None) -> None:
    """Store what the workers crawled: drain the broker's item stream into the corpus."""
    from pipelines.queue_store import BrokerError
    from pipelines.writer import Writer

    try:
        stats = Writer(broker, db, batch_size=batch_size, say=_say).run(idle_exit=idle_exit)
    except KeyboardInterrupt:
        return
    except BrokerError as error:
        _fail(error)
    click.echo(f"writer: {stats.get('nkwatch/stored', 0)} new articles stored, "
               f"{stats.get('nkwatch/store_already_present', 0)} already present, "
               f"{stats.get('nkwatch/crawl_records', 0)} crawls recorded, "
               f"{stats.get('nkwatch/dead_letters', 0)} dead letters")  # fmt: skip


@click.command("enqueue")
@_broker_option
@click.option("--sources", "sources_file", envvar="NKWATCH_SOURCES", default=None,
              type=click.Path(dir_okay=False), help="Sources TOML (to check the names).")  # fmt: skip
@click.option("--crawl-timeout", type=click.FloatRange(min=1), default=1800, show_default=True,
              metavar="SECONDS", help="Wall-clock limit of each crawl.")  # fmt: skip
@click.option("--lease-seconds", type=click.FloatRange(min=1), default=30, show_default=True,
              metavar="SECONDS",
              help="Life of a source's lease, renewed by a live crawl every third of it; a dead "
                   "crawl's source is free again this long after it died.")  # fmt: skip
@click.argument("names", nargs=-1)
def enqueue(broker: str, sources_file: str | None, crawl_timeout: float, lease_seconds: float,
            names: tuple[str, ...]) -> None:  # fmt: skip
    """Queue one crawl job per source NAME (default: every enabled source)."""
    from crawler.sources import load_sources
    from schedules.distributed import BrokerError, JobPolicy, connect, enqueue_crawl

    sources = load_sources(sources_file)
    known = {s.name for s in sources}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise click.ClickException(f"unknown source {unknown[0]!r}: see `nkwatch sources list`")
    chosen = list(names) or [s.name for s in sources if s.enabled]
    try:
        conn = connect(broker)
    except BrokerError as error:
        _fail(error)
    policy = JobPolicy(crawl_seconds=crawl_timeout, lease_seconds=lease_seconds)
    for name in chosen:
        job_id = enqueue_crawl(conn, name, policy)
        click.echo(f"{name}: " + (f"queued ({job_id})" if job_id else
                                  "not queued: a job for it already waits or runs"))  # fmt: skip


@click.command("queue")
@_broker_option
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--dead-letters", is_flag=True, help="List the dead letters with their reasons.")
def queue(broker: str, as_json: bool, dead_letters: bool) -> None:
    """Show the broker: queued and running crawl jobs, workers, leases, the writer's lag."""
    from schedules.distributed import dead_letter_list, describe_status, status_figures

    figures = status_figures(broker)
    if dead_letters and "error" not in figures:
        figures["dead_letter_list"] = dead_letter_list(broker)
    if as_json:
        click.echo(json.dumps(figures, indent=2, ensure_ascii=False, default=str))
    else:
        for line in describe_status(figures):
            click.echo(line)
        for letter in figures.get("dead_letter_list", []):
            click.echo(f"  dead {letter.get('dead_at')} {letter.get('entry_id')}: "
                       f"{letter.get('reason')}")  # fmt: skip
    if "error" in figures:
        sys.exit(1)


COMMANDS = [worker, writer, enqueue, queue]
