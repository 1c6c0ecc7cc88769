"""Session runners: one per mode, behind the `SessionRunner` interface of `base`."""
