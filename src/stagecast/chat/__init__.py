"""Live chat: messages, history, the WebSocket hub, moderation and word filters."""
