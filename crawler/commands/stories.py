"""``nkwatch stories`` and ``nkwatch story ID``: one story, many sightings, read from the corpus."""

from __future__ import annotations

import json
from pathlib import Path

import click

from crawler.commands.options import db_option
from pipelines.corpus import open_corpus
from pipelines.dedupe import get_story, list_stories


def _open(db: str):
    if not Path(db).exists():
        raise click.ClickException(f"no corpus at {db}: run `nkwatch crawl` or `nkwatch demo`")
    return open_corpus(db)


def _echo_json(value) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def _day(stamp: str | None) -> str:
    return (stamp or "")[:10] or "-"


@click.command("stories")
@db_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--min-sightings", default=1, show_default=True, type=click.IntRange(min=1),
              help="Only stories seen at least this many times.")  # fmt: skip
@click.option("--sort", type=click.Choice(["recent", "sightings"]), default="recent",
              show_default=True, help="Newest first, or most sighted first.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def stories_command(db: str, limit: int, min_sightings: int, sort: str, as_json: bool) -> None:
    """List stories: each distinct story once, with how often and where it was seen."""
    found = list_stories(_open(db), limit=limit, min_sightings=min_sightings, sort=sort)
    if as_json:
        _echo_json(found)
        return
    if not found:
        click.echo("No stories yet: crawl first (`nkwatch crawl` or `nkwatch demo`).")
        return
    click.echo(f"{'ID':>6}  {'SEEN':>4}  {'SITES':>5}  {'PUBLISHED':10}  {'SOURCE':24}  TITLE")
    for story in found:
        click.echo(
            f"{story['id']:>6}  {story['sightings']:>4}  {story['sites']:>5}  "
            f"{_day(story['first_published_at']):10}  "
            f"{(story['representative_source'] or '-')[:24]:24}  {story['title'] or '(untitled)'}"
        )


@click.command("story")
@db_option
@click.argument("story_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def story_command(db: str, story_id: int, as_json: bool) -> None:
    """Show one story: its representative (the original) and every sighting of it."""
    story = get_story(_open(db), story_id)
    if story is None:
        raise click.ClickException(f"no story {story_id} in {db}: see `nkwatch stories`")
    if as_json:
        _echo_json(story)
        return
    click.echo(f"Story {story['id']}: {story['title'] or '(untitled)'}")
    click.echo(
        f"  first published {story['first_published_at'] or 'unknown'}, first seen "
        f"{story['first_seen_at']}; {story['sightings']} sighting(s) on {story['sites']} site(s)"
    )
    click.echo(f"  representative: #{story['representative_id']} "
               f"{story['representative_response_url'] or story['representative_url']}")  # fmt: skip
    click.echo("Sightings (oldest first; * = representative):")
    for row in story["sightings_list"]:
        how = row["matched_by"] or "-"
        if row["similarity"] is not None and how not in ("first", "exact"):
            how += f" {row['similarity']:.2f}"
        trust = "" if row["source_trust"] in (None, 1.0) else f" trust {row['source_trust']:g}"
        click.echo(
            f"  {'*' if row['representative'] else ' '} #{row['id']:<6} "
            f"{row['published_local'] or row['published_at'] or 'undated':25}  "
            f"{row['source']}{trust}  [{how}]"
        )
        click.echo(f"      {row['title'] or '(untitled)'}")
        click.echo(f"      {row['response_url'] or row['url']}")


COMMANDS = [stories_command, story_command]
