"""The Textual chat app: screens post messages, the app handles them."""
