"""KMS discovery and publishing through DNS: SRV lookup in RFC 2782 order, RFC 2136 dynamic
updates signed with TSIG, and the diagnosis ``ospp dnsdiag`` prints.
"""
