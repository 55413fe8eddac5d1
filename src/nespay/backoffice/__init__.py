"""Backoffice routers (admin pool only), mounted by the api app under INTERNAL_API_PREFIX."""
