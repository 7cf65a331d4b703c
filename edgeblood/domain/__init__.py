"""Is this image like the training data? The domain check carried by every run and artifact (issue #26)."""
