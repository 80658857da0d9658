"""nkwatch: a scheduled news-monitoring crawler (the Scrapy project and the command line)."""

__version__ = "0.1.0"
