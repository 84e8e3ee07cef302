"""Webhook sources: one module per sender, each verifying its signature and mapping its payloads.

A source turns one signed HTTP delivery into `SourceEvent`s; the ingestion service stores them in
the event log under the source's name (its own id space) and applies their native events.
"""
