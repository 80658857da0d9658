"""Every Scrapy setting and nkwatch's own (``NKWATCH_*``, ``EXTRACT_*``, ``STORE_*``...), in one place.

Components read their own prefix in ``from_crawler``; the CLI overrides a few per run
(database path, sources file, demo allowances). Environment variables ``NKWATCH_DB`` and
``NKWATCH_SOURCES`` are honoured here so ``scrapy crawl feeds`` and ``nkwatch crawl`` agree.
"""

import os

from crawler import __version__

BOT_NAME = "nkwatch"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"

# --- nkwatch's own -------------------------------------------------------------------------
NKWATCH_DB = os.environ.get("NKWATCH_DB", "nkwatch.db")
NKWATCH_SOURCES = os.environ.get("NKWATCH_SOURCES", "")  # empty: ./sources.toml, else shipped
NKWATCH_SOURCE_NAMES = []  # crawl only these sources (empty: every enabled source)
NKWATCH_CONTACT_URL = os.environ.get("NKWATCH_CONTACT_URL", "https://github.com/nkwatch/nkwatch")
NKWATCH_MAX_ENTRIES_PER_FEED = 500  # a feed listing more is cut, newest first
NKWATCH_ALLOW_PRIVATE_HOSTS = False  # sources may opt in with allow_private = true
NKWATCH_PROGRESS_SECONDS = 10.0  # a progress line this often during a crawl
NKWATCH_LOG_SUMMARY = True  # log the closing summary (the CLI prints it itself)
NKWATCH_RUN_ID = 0  # the daemon's runs row this crawl fills in (0: the crawl inserts its own)
NKWATCH_PARENT_PID = 0  # the daemon's pid: the crawl closes once it is gone (crawler/parentwatch.py)

EXTRACT_WORKERS = None  # worker processes for extraction; None: one per CPU core, 0: inline
NKWATCH_GC_THRESHOLDS = [30000, 10, 10]  # crawl process and workers (crawler/interpreter.py)
NKWATCH_SWITCH_INTERVAL = 0.001  # GIL switch interval of the crawl process (crawler/interpreter.py)
EXTRACT_MIN_WORDS = 20  # a body shorter than this is a failed extraction, not an article
EXTRACT_FAVOR = "balanced"  # "precision" | "recall" | "balanced" (trafilatura's knobs)

BOILERPLATE_ENABLED = True
BOILERPLATE_MIN_PAGES = 4  # a line is a site's furniture only if on this many distinct pages
BOILERPLATE_MIN_SHARE = 0.3  # ...and on this share of the site's pages

RELEVANCE_TOPICS = ""  # topics TOML; empty: NKWATCH_TOPICS, then ./topics.toml, then shipped

STORE_BATCH_SIZE = 50  # rows per transaction; a killed crawl loses at most one batch
STORE_FLUSH_SECONDS = 1.0  # and never holds a row uncommitted longer than this
STORE_KEEP_RAW = True
STORE_KEEP_OFFTOPIC_TEXT = False  # off-topic articles keep URL, title and scores, not text  # keep compressed HTML so `nkwatch reextract` needs no network

# --- politeness ----------------------------------------------------------------------------
USER_AGENT = f"nkwatch/{__version__} (+{NKWATCH_CONTACT_URL})"
ROBOTSTXT_OBEY = True
ROBOTSTXT_MAX_CRAWL_DELAY = 60.0  # a robots.txt Crawl-delay is obeyed up to this (seconds)
CONCURRENT_REQUESTS = 32
CONCURRENT_REQUESTS_PER_DOMAIN = 4
DOWNLOAD_DELAY = 0.25
DOWNLOAD_DELAY_JITTER = 0.5
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 0.25
AUTOTHROTTLE_MAX_DELAY = 30.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 2.0
COOKIES_ENABLED = False
TELNETCONSOLE_ENABLED = False

# --- limits: the hostile web ---------------------------------------------------------------
DOWNLOAD_TIMEOUT = 30
DOWNLOAD_MAXSIZE = 20 * 1024 * 1024
DOWNLOAD_WARNSIZE = 5 * 1024 * 1024
REDIRECT_MAX_TIMES = 5
RETRY_ENABLED = True
RETRY_TIMES = 2
RETRY_HTTP_CODES = [500, 502, 503, 504, 522, 524, 408, 429]
HTTPERROR_ALLOW_ALL = False
RETRY_AFTER_MAX_SECONDS = 120  # a longer Retry-After fails the request; the next crawl retries

# --- components ----------------------------------------------------------------------------
DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    "crawler.middlewares.RobotsTxtMiddleware": 100,  # Scrapy's place; obeys Crawl-delay too
    "crawler.middlewares.AddressGuardMiddleware": 40,
    "crawler.middlewares.SeenUrlMiddleware": 50,
    "crawler.middlewares.ConditionalGetMiddleware": 60,
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "crawler.middlewares.RetryAfterMiddleware": 550,
    "scrapy.downloadermiddlewares.redirect.MetaRefreshMiddleware": None,
    "crawler.middlewares.MetaRefreshMiddleware": 580,
}
ITEM_PIPELINES = {
    "pipelines.pagework.PageWorkPipeline": 100,  # extraction + the CPU work of every stage
    "pipelines.boilerplate.BoilerplatePipeline": 150,  # before relevance/dedupe: clean text
    "pipelines.relevance.RelevancePipeline": 300,
    "pipelines.dedupe.DedupePipeline": 500,
    "pipelines.store.StorePipeline": 900,
}
EXTENSIONS = {
    "crawler.summary.CrawlSummary": 500,
    "crawler.interpreter.InterpreterTuning": 510,
    "crawler.parentwatch.ParentWatch": 520,
}

# Items of one response processed in parallel. An article page yields one item, and Scrapy
# starts this many tasks for every response whatever it yields: the default of 100 cost more
# reactor time than storing the article did.
CONCURRENT_ITEMS = 8
REQUEST_FINGERPRINTER_IMPLEMENTATION = "2.7"
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
FEED_EXPORT_ENCODING = "utf-8"
LOG_LEVEL = os.environ.get("NKWATCH_LOG_LEVEL", "INFO")
