"""Data: the MM-Fi on-disk format (reader and synthetic writer), splits, packed cache, collation."""
