"""A crawl started by the daemon stops when the daemon is gone.

The daemon starts each crawl in a session of its own, so that signals meant for the daemon
(Ctrl-C, a terminal closing) reach the crawl only as the daemon decides. The other side of that:
a daemon killed outright (SIGKILL, the out-of-memory killer) used to leave its crawl running
with nobody to time it out, record it or stop it, beside the crawls of the daemon restarted
after it. The crawl now looks at its parent every few seconds; once it has been handed to
another parent, it closes as a cancelled crawl, as on SIGTERM: the requests already in flight
finish (at most ``CONCURRENT_REQUESTS``), the pending batch is committed, and feed validators
are not saved, so the next crawl fetches what this one did not.
Setting: ``NKWATCH_PARENT_PID`` (the daemon sets it; 0: not watched).
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

CHECK_SECONDS = 2.0


class ParentWatch:
    """Closes the crawl once its parent process (the daemon) is no longer its parent."""

    def __init__(self, crawler, parent_pid: int) -> None:
        self.crawler, self.parent_pid = crawler, parent_pid
        self.timer = None
        self.closing = False
        self.closed = None  # the Deferred of the closing, once started

    @classmethod
    def from_crawler(cls, crawler):
        from scrapy import signals
        from scrapy.exceptions import NotConfigured

        parent_pid = crawler.settings.getint("NKWATCH_PARENT_PID")
        if not parent_pid:
            raise NotConfigured  # not started by a daemon: nothing to watch, nothing to say
        watch = cls(crawler, parent_pid)
        crawler.signals.connect(watch.engine_started, signal=signals.engine_started)
        crawler.signals.connect(watch.engine_stopped, signal=signals.engine_stopped)
        return watch

    def engine_started(self) -> None:
        from twisted.internet import task

        self.timer = task.LoopingCall(self.check)
        self.timer.start(CHECK_SECONDS, now=True)

    def engine_stopped(self) -> None:
        if self.timer is not None and self.timer.running:
            self.timer.stop()

    def check(self) -> None:
        if self.closing or os.getppid() == self.parent_pid:
            return
        self.closing = True
        logger.error("the daemon that started this crawl (pid %d) is gone; closing the crawl",
                     self.parent_pid)  # fmt: skip
        from scrapy.utils.defer import deferred_from_coro

        # kept on self: the event loop holds tasks weakly, and a collected task never runs
        self.closed = deferred_from_coro(self.crawler.engine.close_spider_async(reason="parent gone"))
        self.closed.addErrback(lambda failure: logger.error("closing failed: %s", failure.value))
