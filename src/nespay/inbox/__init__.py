"""The provider inbox: Rain, Intrajasa and Privy webhooks verified, stored raw, handled
asynchronously (docs/webhooks.md)."""
