"""The KMS host: its durable counts and identity, and the server that answers KMS clients
(group commit, request log, DNS publishing loop).
"""
