"""The explorer's routes by concern: the page, the live socket, and files (up and down)."""
