"""CAP 1.2 (OASIS Common Alerting Protocol): reading alerts in, writing broadcasts out."""
