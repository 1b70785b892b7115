"""What crosses between roles: product keys, installation and confirmation IDs, signatures,
certificates and trust anchors, the KMS rules both sides apply, and the wire framing.

``protocol`` imports ``core`` and nothing of any role.
"""
