"""``nkwatch run`` (the crawl daemon), ``nkwatch runs`` (crawl history), ``nkwatch status``."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import click

from crawler.commands.options import db_option, parse_overrides, sources_option
from schedules.daemon import CrawlDaemon, DaemonConfig, ExportHook
from schedules.jobs import CrawlLimits
from schedules.lock import DaemonLockedError
from schedules.status import daemon_report, describe_daemon, run_history


@click.command("run")
@db_option
@sources_option
@click.option(
    "--crawl-timeout",
    type=click.FloatRange(min=1),
    default=1800,
    show_default=True,
    metavar="SECONDS",
    help="Wall-clock limit of one crawl; then it is ended.",
)
@click.option(
    "--stop-grace",
    type=click.FloatRange(min=0),
    default=30,
    show_default=True,
    metavar="SECONDS",
    help="On SIGTERM/Ctrl-C, how long a running crawl may finish.",
)
@click.option(
    "--once", is_flag=True, help="Crawl the sources that are due now, once, and exit (for cron)."
)
@click.option(
    "--set",
    "crawl_settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A setting for every crawl (repeatable), as `nkwatch crawl --set`.",
)
@click.option(
    "--batch-max",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="At most this many due sources share one crawl process.",
)
@click.option(
    "--export-consumer",
    metavar="NAME",
    help="After each crawl that stored articles, export what NAME has not had yet.",
)
@click.option(
    "--export-out",
    metavar="PATH",
    help="Where that export goes; {run_id} in PATH gives each export its own file.",
)
@click.option("--export-format", default=None, help="Format of that export (default: export's).")
@click.option(
    "--reload-seconds",
    type=click.FloatRange(min=0.2),
    default=2.0,
    show_default=True,
    help="How often to check the sources file for changes.",
)
@click.option("--interval-scale", envvar="NKWATCH_INTERVAL_SCALE", type=click.FloatRange(min=0.001),
              default=1.0, show_default=True,
              help="For tests and demos: multiply every interval (0.05: a 1-minute source "
                   "runs every 3 s); also NKWATCH_INTERVAL_SCALE.")  # fmt: skip
@click.option("--broker", envvar="NKWATCH_BROKER", default=None,
              help="Redis URL: enqueue crawl jobs for `nkwatch worker` instead of crawling here; "
                   "also NKWATCH_BROKER.")  # fmt: skip
@click.pass_context
def run_command(ctx: click.Context, db: str, sources_file: str | None, crawl_timeout: float,
                stop_grace: float, once: bool, crawl_settings: tuple[str, ...], batch_max: int,
                export_consumer: str | None, export_out: str | None, export_format: str | None,
                reload_seconds: float, interval_scale: float, broker: str | None) -> None:  # fmt: skip
    """Crawl every enabled source at its interval until stopped (SIGTERM or Ctrl-C).

    One crawl process at a time; overdue sources run at start; the sources file is re-read
    when it changes; a second daemon on the same corpus is refused.
    """
    _log_to_stderr()
    parse_overrides(crawl_settings)  # a malformed pair is a one-line error before the start
    config = DaemonConfig(
        db=Path(db),
        sources_file=Path(sources_file) if sources_file else None,
        limits=CrawlLimits(timeout_seconds=crawl_timeout, stop_grace_seconds=stop_grace),
        interval_scale=interval_scale,
        reload_seconds=reload_seconds,
        batch_max=batch_max,
        crawl_settings=list(crawl_settings),
        export=_export_hook(ctx, export_consumer, export_out, export_format),
        broker=broker,
    )
    daemon = CrawlDaemon(config)
    daemon.install_signal_handlers()
    try:
        totals = daemon.run(once=once)
    except DaemonLockedError as error:
        raise click.ClickException(str(error)) from None
    if once:
        for line in totals.lines():
            click.echo("  " + line)
        if totals.failed:
            sys.exit(1)


def _export_hook(ctx: click.Context, consumer: str | None, out: str | None,
                 fmt: str | None) -> ExportHook | None:  # fmt: skip
    if not consumer and not out:
        return None
    if not (consumer and out):
        raise click.ClickException("--export-consumer and --export-out go together")
    export = getattr(ctx.find_root().command, "commands", {}).get("export")
    options = {opt for param in getattr(export, "params", []) for opt in param.opts}
    if export is None or not {"--consumer", "--out"} <= options:
        logging.getLogger("schedules.daemon").warning(
            "no scheduled export: this nkwatch has no `export --consumer --out` command"
        )
        return None
    try:
        out.format(run_id=0)
    except (KeyError, IndexError, ValueError):
        raise click.ClickException(
            f"--export-out {out!r}: the only placeholder is {{run_id}} (double other braces)"
        ) from None
    return ExportHook(consumer=consumer, out=out, fmt=fmt)


def _log_to_stderr() -> None:
    """One line per event, UTC timestamps, for a terminal, systemd's journal or a log file."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    for name in ("schedules",):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.propagate = False


@click.command("runs")
@db_option
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
def runs_command(db: str, limit: int, as_json: bool) -> None:
    """The latest crawls: when, how long, what they stored, and why any failed."""
    history = run_history(db, limit)
    if as_json:
        click.echo(json.dumps(history, ensure_ascii=False, indent=2))
        return
    if not history:
        click.echo(f"no crawls recorded in {db} yet")
        return
    click.echo(f"{'run':>5}  {'started (UTC)':20}  {'status':8}  {'time':>7}  {'new':>4}  "
               f"{'errors':>6}  sources / reason")  # fmt: skip
    for run in history:
        seconds = f"{run['seconds']:.0f} s" if run["seconds"] is not None else "-"
        detail = run["sources"] or ""
        if run["reason"]:
            detail += f"  ({run['reason']})"
        click.echo(f"{run['id']:>5}  {run['started_at'] or '':20}  {run['status']:8}  "
                   f"{seconds:>7}  {run['new_articles'] or 0:>4}  {run['errors'] or 0:>6}  "
                   f"{detail}")  # fmt: skip


@click.command("status")
@db_option
@sources_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--broker", envvar="NKWATCH_BROKER", default=None,
              help="Redis URL: also show queue depth, workers, leases, writer lag.")  # fmt: skip
def status_command(db: str, sources_file: str | None, as_json: bool, broker: str | None) -> None:
    """Is a daemon running on the corpus; each source's last and next crawl; recent failures."""
    report = daemon_report(db, sources_file)
    if broker:
        from schedules.distributed import describe_status, status_figures

        report["broker"] = status_figures(broker)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2, default=str))
        return
    click.echo(describe_daemon(report))
    if broker:
        for line in describe_status(report["broker"]):
            click.echo(line)
    if report["sources_note"]:
        click.echo(f"Note: {report['sources_note']}")
    click.echo(f"\n{'source':30}  {'every':>8}  {'last crawl (UTC)':20}  {'next run (UTC)':20}  "
               "failures")  # fmt: skip
    for row in report["sources"]:
        every = _every(row)
        next_run = row["next_run_at"] or ("-" if report["daemon"] else "(no daemon)")
        click.echo(f"{row['source']:30}  {every:>8}  {row['last_crawl_at'] or 'never':20}  "
                   f"{next_run:20}  {row['consecutive_failures']}")  # fmt: skip
    errors = [row for row in report["sources"] if row["last_error"]]
    if errors or report["recent_failures"]:
        click.echo("\nLast errors:")
        for row in errors:
            click.echo(f"  {row['source']}: {row['last_error']}")
        for run in report["recent_failures"]:
            click.echo(f"  run {run['id']} ({run['started_at']}, {run['sources']}): "
                       f"{run['reason'] or run['status']}")  # fmt: skip


def _every(row: dict) -> str:
    seconds = row["interval_seconds"]
    if seconds is None:
        return "?"
    text = f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
    return text + (
        f" x{row['poll_factor']:g}" if row["adaptive"] and row["poll_factor"] != 1 else ""
    )


COMMANDS = [run_command, runs_command, status_command]
