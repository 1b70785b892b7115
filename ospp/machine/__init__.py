"""The simulated machine (the client): its licence store, status, the ospp.vbs verbs, MAK and
phone activation, the KMS client and the licensing service that renews it.
"""
