"""The Feast feature repository (entity, sources, feature views, the `nba_scoring` feature
service) and the batch feature jobs that feed it: customer lifetime value, RFM and personas."""
