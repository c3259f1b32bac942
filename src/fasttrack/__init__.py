"""fasttrack: async REST + WebSocket API for team task tracking."""

__version__ = "1.0.0"
