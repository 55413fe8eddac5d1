"""Who is calling: Cognito users and admins, API keys, scopes, client IPs, rate limits."""
