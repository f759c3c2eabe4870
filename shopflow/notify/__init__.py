"""Notifications: how a message reaches a user (channels), what it says (templates), and when (preferences)."""
