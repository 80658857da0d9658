"""APScheduler jobs that run crawls unattended."""
