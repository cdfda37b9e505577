"""Progressive rollout: stages, the canary analysis and the traffic backends (local, Kubernetes)."""
