"""Device security: per-speaker broker credentials, the broker's ACL, and security events."""
