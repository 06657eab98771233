"""What is checked and how it is decided: the pipeline of one upload, the policy, media handling,
provider etiquette and retries, and the provider clients (``checks.providers``)."""
