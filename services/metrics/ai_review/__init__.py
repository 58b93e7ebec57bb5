"""AI review of pull requests: a risk score per (pull request, head sha, provider).

Providers: `heuristic` (offline, deterministic; Kamei et al.'s change features) and `llm`
(an OpenAI-compatible endpoint, falling back to the heuristic). `review_all` gives every
stored pull request an explained heuristic review (used by the seed).
"""
