"""Item pipelines: extract, judge relevance, deduplicate and store; the corpus that holds it all."""
