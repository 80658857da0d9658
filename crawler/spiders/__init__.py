"""Spiders turn sources into article requests: feeds, sitemaps and section pages."""
