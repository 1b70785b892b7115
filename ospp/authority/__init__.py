"""The activation authority: issues MAK and KMS host keys, activates them online, runs the
phone centre, and serves all of it over the ospp protocol.
"""
