"""Multi-touch attribution: which touches earned the conversions (issue 23)."""
