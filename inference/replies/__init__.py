"""Reply drafting beside the endpoint: Bedrock (Converse), playbook replies, cluster summaries, the
second stage of the two-stage scorer and the output policy, with their prompts and playbooks.

Served by the endpoint as `POST /responses` and `POST /summaries` (`api`), and by `fbrain respond`
(`cli`). The endpoint imports this package (to mount the routes); nothing here imports the endpoint.
"""
