"""From trend to owner: detection over the lake, Alertmanager-style alerts, playbooks, incidents and notifications."""
